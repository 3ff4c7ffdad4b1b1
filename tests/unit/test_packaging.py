"""The wheel: one `conveyor` namespace in site-packages, with every data file partners need."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("conveyor-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_only_the_conveyor_namespace(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"conveyor"}
    assert not tops & {"db", "schemas", "workers", "devservices", "tests", "bench"}


def test_the_wheel_carries_every_schema_the_asyncapi_document_and_the_migrations(wheel):
    names = set(wheel.namelist())
    schemas = {f"conveyor/schemas/json/{p.name}" for p in (ROOT / "schemas" / "json").glob("*.schema.json")}
    migrations = {f"conveyor/db/migrations/{p.name}" for p in (ROOT / "db" / "migrations").glob("*.sql")}
    assert len(schemas) >= 11 and len(migrations) >= 7
    assert schemas <= names and migrations <= names
    assert {"conveyor/schemas/asyncapi.yaml", "conveyor/py.typed"} <= names


def test_the_wheel_has_licence_metadata_and_the_conveyor_command(wheel):
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(wheel.read(meta_name))
    assert meta["License"] or meta["License-Expression"]
    entry = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "conveyor = conveyor.workers.cli:main" in wheel.read(entry).decode()
