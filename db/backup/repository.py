"""What the repository holds, as plain data: the backups and the archived WAL of a stanza.

Parsed from ``pgbackrest info --output=json`` (``parse_info``) and ``pgbackrest repo-ls
--output=json --recurse archive/<stanza>`` (``parse_wal_listing``). The decisions on them are
pure functions: which backup a restore to a time starts from (``backup_for``), whether the WAL
after a backup is continuous (``gaps``). WAL segment names are TTTTTTTTXXXXXXXXYYYYYYYY
(timeline, then the segment number split in two, 256 segments of 16 MiB per "XXXXXXXX").
"""

from __future__ import annotations

import configparser
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from conveyor.db.backup.errors import BackupError, NoBackups, RepositoryUnreachable, StanzaNotFound

WAL_FILE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})-[0-9a-f]{40}(\.[a-z0-9]+)?$")
SEGMENTS_PER_XLOGID = 0x100000000 // (16 * 1024 * 1024)  # the default 16 MiB segments
STANZA_MISSING, NO_VALID_BACKUPS, STANZA_DATA_MISSING = 1, 2, 3


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str                 # full, diff, incr
    started: datetime
    stopped: datetime         # whole seconds, as pgBackRest records it
    wal_start: str            # the first WAL segment it needs
    wal_stop: str
    size: int                 # bytes of the database
    repo_size: int            # bytes in the repository (compressed)
    prior: str | None


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status: str
    backups: list[BackupSet] = field(default_factory=list)
    archive_id: str | None = None     # e.g. "15-1": PostgreSQL version and the stanza's db id
    wal_min: str | None = None
    wal_max: str | None = None
    pg_version: str | None = None
    repo_status: str = ""             # the repository's own complaint, when it has one


@dataclass(frozen=True)
class WalFile:
    name: str                 # 24 hex digits
    path: str                 # relative to the repository root, for repo-get
    archived_at: datetime

    @property
    def timeline(self) -> int:
        return int(self.name[:8], 16)

    @property
    def number(self) -> int:
        return segment_number(self.name)


def segment_number(name: str) -> int:
    return int(name[8:16], 16) * SEGMENTS_PER_XLOGID + int(name[16:24], 16)


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """The stanza's entry of ``info --output=json``."""
    entries = [e for e in json.loads(text) if e.get("name") == stanza]
    if not entries:
        raise StanzaNotFound(f"stanza {stanza!r} is not in the repository")
    entry = entries[0]
    db = entry.get("db") or []
    current = db[-1]["id"] if db else None
    archive = [a for a in entry.get("archive") or [] if a["database"]["id"] == current]
    backups = [_backup_set(b) for b in entry.get("backup") or [] if b["database"]["id"] == current]
    complaints = [r["status"]["message"] for r in entry.get("repo") or [] if r["status"]["code"] != 0]
    return StanzaInfo(entry["name"], entry["status"]["code"], entry["status"]["message"], backups,
                      archive[-1]["id"] if archive else None, archive[-1].get("min") if archive else None,
                      archive[-1].get("max") if archive else None, db[-1]["version"] if db else None,
                      "; ".join(complaints))


def _backup_set(raw: dict) -> BackupSet:
    stamp = raw["timestamp"]
    return BackupSet(raw["label"], raw["type"], _utc(stamp["start"]), _utc(stamp["stop"]),
                     raw["archive"]["start"], raw["archive"]["stop"], raw["info"]["size"],
                     raw["info"]["repository"]["delta"], raw.get("prior"))


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def require_stanza(info: StanzaInfo, *, repo_path: str | None) -> None:
    """Refuse a stanza that is missing, or whose repository cannot be read."""
    if info.status_code in (STANZA_MISSING, STANZA_DATA_MISSING):
        if repo_path is not None and not os.path.isdir(repo_path):
            raise RepositoryUnreachable(f"the repository path {repo_path} does not exist",
                                        hint="is its storage mounted? is repo1-path right?")
        raise StanzaNotFound(f"stanza {info.name!r}: {info.status}",
                             hint="create it: conveyor backup stanza-create")
    if info.status_code not in (0, NO_VALID_BACKUPS):
        detail = (info.repo_status or info.status).splitlines()[0]
        unreadable = "Permission denied" in detail or "unable to" in detail
        raise (RepositoryUnreachable if unreadable else BackupError)(f"stanza {info.name!r}: {detail}")


def require_backups(info: StanzaInfo, *, repo_path: str | None) -> None:
    """``require_stanza``, and at least one valid backup."""
    require_stanza(info, repo_path=repo_path)
    if not info.backups:
        raise NoBackups(f"stanza {info.name!r} has no backup yet", hint="take one: conveyor backup run --type full")


def parse_wal_listing(text: str, archive_id: str, stanza: str) -> list[WalFile]:
    """WAL segments of ``repo-ls --output=json --recurse archive/<stanza>/<archive_id>``."""
    files = []
    for path, entry in json.loads(text).items():
        match = WAL_FILE.match(os.path.basename(path))
        if entry.get("type") == "file" and match:
            files.append(WalFile("".join(match.groups()[:3]), f"archive/{stanza}/{archive_id}/{path}",
                                 _utc(entry.get("time", 0))))
    return sorted(files, key=lambda f: (f.number, f.timeline))


def backup_for(info: StanzaInfo, target: datetime) -> BackupSet | None:
    """The newest backup that ended before ``target`` (pgBackRest compares whole seconds, so
    one that stopped in the same second as the target does not count)."""
    whole = target.replace(microsecond=0)
    usable = [b for b in info.backups if b.stopped < whole]
    return max(usable, key=lambda b: b.stopped) if usable else None


def gaps(wal: list[WalFile], *, start: str) -> list[str]:
    """Segment numbers (as names on ``start``'s timeline) missing between ``start`` and the
    newest archived segment: a recovery from a backup that needs ``start`` cannot cross them.
    Segments of any timeline count (after a restore, the new timeline continues the old)."""
    first, timeline = segment_number(start), int(start[:8], 16)
    have = {f.number for f in wal if f.timeline >= timeline}
    if not have:
        return [start]
    return [segment_name(timeline, n) for n in range(first, max(have) + 1) if n not in have]


def segment_name(timeline: int, number: int) -> str:
    return f"{timeline:08X}{number // SEGMENTS_PER_XLOGID:08X}{number % SEGMENTS_PER_XLOGID:08X}"


def newest_segments(wal: list[WalFile]) -> list[WalFile]:
    """The archived segments of the newest timeline, newest first (where recovery ends)."""
    if not wal:
        return []
    latest = max(f.timeline for f in wal)
    return sorted((f for f in wal if f.timeline == latest), key=lambda f: f.number, reverse=True)


def repo_path(config: str | None, stanza: str) -> str | None:
    """``repo1-path`` of a posix repository from the configuration file (None if unknown)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(config or "/etc/pgbackrest/pgbackrest.conf")
    except configparser.Error:
        return None
    sections = [s for s in (stanza, "global") if parser.has_section(s)]
    if any(parser.get(s, "repo1-type", fallback="posix") != "posix" for s in sections):
        return None
    return next((parser.get(s, "repo1-path") for s in sections if parser.has_option(s, "repo1-path")),
                "/var/lib/pgbackrest")
