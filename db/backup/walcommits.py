"""The newest point a restore can reach: the time of the last commit in the archived WAL.

Recovery to a time stops at the first commit after it; when the archive ends before such a
commit, PostgreSQL refuses to finish ("recovery ended before configured recovery target was
reached"). So the newest reachable target is just before the last archived commit. We read
it from the newest archived segments: ``pgbackrest repo-get`` (decrypts, works without the
data directory, which may be the thing that was lost), decompress by the file's extension,
and ``pg_waldump`` (PostgreSQL's own WAL reader) lists the commit records with their times.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone

from conveyor.db.backup.errors import BackupError
from conveyor.db.backup.pgbackrest import PgBackRest
from conveyor.db.backup.repository import WalFile, newest_segments

COMMIT_RECORD = re.compile(r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
DECOMPRESS_TOOLS = {".lz4": ["lz4", "-dc"], ".zst": ["zstd", "-dc"]}
LOOK_BACK = 4  # segments (from the newest) searched for a commit


def newest_commit(pgbackrest: PgBackRest, wal: list[WalFile], *, pg_version: str | None,
                  pg_bindir: str | None = None) -> datetime | None:
    """The time of the newest commit (or abort) in the archive; None when the newest
    segments hold none or ``pg_waldump`` is not installed."""
    waldump = find_waldump(pg_version, pg_bindir)
    if waldump is None:
        return None
    with tempfile.TemporaryDirectory(prefix="conveyor-wal-") as scratch:
        for wal_file in newest_segments(wal)[:LOOK_BACK]:
            found = _last_commit(pgbackrest, wal_file, waldump, scratch)
            if found is not None:
                return found
    return None


def _last_commit(pgbackrest: PgBackRest, wal_file: WalFile, waldump: str, scratch: str) -> datetime | None:
    path = os.path.join(scratch, wal_file.name)
    with open(path, "wb") as out:
        out.write(decompress(pgbackrest.run_bytes("repo-get", wal_file.path), wal_file.path))
    # pg_waldump exits 1 at the end of a switched segment ("invalid record length"): what it
    # printed before that is what we read.
    done = subprocess.run([waldump, path], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"})
    os.remove(path)
    times = COMMIT_RECORD.findall(done.stdout)
    return datetime.fromisoformat(times[-1]).replace(tzinfo=timezone.utc) if times else None


def decompress(data: bytes, path: str) -> bytes:
    extension = os.path.splitext(path)[1]
    if extension == ".gz":
        return gzip.decompress(data)
    if extension == ".bz2":
        return bz2.decompress(data)
    if extension in DECOMPRESS_TOOLS:
        tool = DECOMPRESS_TOOLS[extension]
        if shutil.which(tool[0]) is None:
            raise BackupError(f"cannot read {path}: {tool[0]} is not installed")
        return subprocess.run(tool, input=data, capture_output=True, check=True).stdout
    return data


def find_waldump(pg_version: str | None, pg_bindir: str | None = None) -> str | None:
    """``pg_waldump`` of the stanza's PostgreSQL version (it reads only its own version's WAL)."""
    candidates = [os.path.join(pg_bindir, "pg_waldump")] if pg_bindir else []
    if pg_version:
        candidates.append(f"/usr/lib/postgresql/{pg_version}/bin/pg_waldump")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_waldump"), reverse=True)
    candidates.append(shutil.which("pg_waldump") or "")
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)
