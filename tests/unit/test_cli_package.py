"""The CLI package: no import cycles, no runtime-only imports at --help, version, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.workers.cli import GROUPS, build_parser

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, **env})


@pytest.mark.parametrize("module", ["base", *GROUPS])
def test_each_command_module_imports_on_its_own(module):
    # A fresh interpreter importing only this module: a cycle through the package would fail here.
    done = _python(f"import conveyor.workers.cli.{module}")
    assert done.returncode == 0, done.stderr


def test_no_group_module_imports_the_package():
    for module in ["base", *GROUPS]:
        text = (ROOT / "workers" / "cli" / f"{module}.py").read_text()
        assert "from conveyor.workers.cli import" not in text, module


def test_building_the_parser_loads_neither_pika_nor_psycopg_nor_the_dev_services():
    done = _python("import sys; from conveyor.workers.cli import build_parser; build_parser(); "
                   "print(sorted(m for m in ('pika', 'psycopg', 'conveyor.devservices') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_worker_runtime_never_imports_the_dev_services():
    done = _python("import sys; import conveyor.workers.bootstrap, conveyor.workers.runtime.processor; "
                   "print('conveyor.devservices' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_version_prints_the_installed_version(capsys):
    from conveyor import __version__

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"conveyor {__version__}"
    assert __version__ != "0+unknown"


def test_shell_completion_offers_the_db_actions(tmp_path):
    out = tmp_path / "completions"
    line = "conveyor db "
    done = subprocess.run(
        [sys.executable, "-m", "conveyor"], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
             "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)})
    assert done.returncode == 0, done.stderr
    offered = set(out.read_text().split("\n"))
    assert {"migrate", "status", "partitions"} <= offered


def test_the_package_finds_its_data_from_any_directory(tmp_path):
    # Outside the checkout the root folders (db/, schemas/) are not importable: only conveyor.* is.
    done = subprocess.run(
        [sys.executable, "-c", "from conveyor.db.migrate import discover; print(len(discover()))"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 7
