"""Migration files: discovery, naming rules, directives, purpose and statements.

Files in ``db/migrations`` follow Flyway's naming (``V001__create_inventory.sql``). Lines at the
top of a file may carry directives for the runner:

- ``-- conveyor:no-transaction``: applied statement by statement outside a transaction
  (``CREATE INDEX CONCURRENTLY``, a backfill that commits per batch); each completed statement
  is recorded, so an interrupted run resumes after it. Every statement must be safe to run
  again (``IF NOT EXISTS``, ``UPDATE ... WHERE new IS NULL``).
- ``-- conveyor:contract``: the contract step of an expand/contract change: held back by
  ``conveyor db migrate`` until ``--contract`` says every worker runs the new code.

The first comment paragraph that is not a directive is the file's purpose (docs/database.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sqlparse

from conveyor.db.errors import MigrationError

FILENAME = re.compile(r"^V(?P<version>\d+)__(?P<description>[A-Za-z0-9_]+)\.sql$")
DIRECTIVE = re.compile(r"^--\s*conveyor:(?P<name>\S+)\s*$")
DIRECTIVES = frozenset({"no-transaction", "contract"})


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def directives(self) -> frozenset[str]:
        return _directives(self.filename, self.sql)

    @property
    def transactional(self) -> bool:
        return "no-transaction" not in self.directives

    @property
    def phase(self) -> str:
        """``expand`` (applied by every ``conveyor db migrate``) or ``contract``."""
        return "contract" if "contract" in self.directives else "expand"

    @property
    def purpose(self) -> str:
        """The first comment paragraph of the file, directives left out, as one line."""
        lines: list[str] = []
        for line in self.sql.splitlines():
            stripped = line.strip()
            if DIRECTIVE.match(stripped):
                continue
            if not stripped.startswith("--") or (lines and stripped in ("--", "")):
                break
            text = stripped[2:].strip()
            if text or lines:
                lines.append(text)
        return " ".join(part for part in lines if part)

    def statements(self) -> list[str]:
        """The file's statements, in order (comments that stand alone are dropped)."""
        found = []
        for statement in sqlparse.split(self.sql):
            if sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip():
                found.append(statement.strip())
        return found


def statement_checksum(statement: str) -> str:
    return hashlib.sha256(statement.encode()).hexdigest()


def _directives(filename: str, sql: str) -> frozenset[str]:
    names = set()
    for line in sql.splitlines():
        match = DIRECTIVE.match(line.strip())
        if not match:
            if line.strip() and not line.strip().startswith("--"):
                break  # directives come before the first statement
            continue
        if match["name"] not in DIRECTIVES:
            raise MigrationError(f"{filename}: unknown directive 'conveyor:{match['name']}' "
                                 f"(known: {', '.join(sorted(DIRECTIVES))})")
        names.add(match["name"])
    return frozenset(names)


def default_directory() -> Path:
    return Path(str(resources.files("conveyor.db") / "migrations"))


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration file in version order; a malformed name, a duplicate version or an
    unknown directive is an error."""
    directory = directory or default_directory()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name!r} does not match V<version>__<description>.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migration files share version {version}: {found[version].filename}, {path.name}")
        migration = Migration(version, match["description"].replace("_", " "), path.name, path.read_text())
        _ = migration.directives  # refuse unknown directives at discovery
        found[version] = migration
    return [found[v] for v in sorted(found)]
