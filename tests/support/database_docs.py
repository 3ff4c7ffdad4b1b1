"""``make docs-db``: ``docs/database.md`` from the catalog of a freshly migrated database.

``python -m tests.support.database_docs [--output FILE]`` finds a PostgreSQL the way the test
suite does (``conveyor.devservices``: the environment's, a testcontainer, or throwaway servers),
migrates a database of its own as the suite's template is migrated (``migrate`` only: no
partitions made ahead, and the document names none anyway), writes what
``conveyor.db.catalog`` renders of it, and drops it. ``tests/integration/test_database_docs.py``
compares the committed file with :func:`render` of the suite's own migrated database.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conveyor import devservices

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "database.md"


def render(database_url: str) -> str:
    """The Markdown ``conveyor.db.catalog`` gives for the database at ``database_url``."""
    import psycopg

    from conveyor.db.catalog import describe, render_markdown

    with psycopg.connect(database_url, autocommit=True) as conn:
        return render_markdown(describe(conn))


def generate(services: devservices.Services) -> str:
    """Migrate a fresh database on ``services`` and render it; the database is dropped after."""
    from conveyor.db.migrate import migrate

    with devservices.fresh_database(services, prefix="conveyor_docs") as url:
        migrate(url)
        return render(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.database_docs", description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=DOCS_PATH, help=f"default {DOCS_PATH}")
    args = parser.parse_args(argv)
    with devservices.provide_services(log=lambda line: print(line, file=sys.stderr)) as services:
        text = generate(services)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
