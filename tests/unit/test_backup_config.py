"""deploy/pgbackrest/ and docker-compose.yml say the same about backups (docs/backup.md): the
archiving settings of the plain host's snippet are the compose server's ``-c`` flags, both
pgBackRest configurations keep the same retention and name the stanza Conveyor uses."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

from conveyor.workers.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "pgbackrest"
RETENTION = ("repo1-retention-full-type", "repo1-retention-full", "repo1-retention-diff")


def _snippet() -> dict[str, str]:
    settings = {}
    for line in (DEPLOY / "archiving.conf").read_text().splitlines():
        match = re.match(r"^\s*(\w+)\s*=\s*'?(.*?)'?\s*$", line)
        if match and not line.lstrip().startswith("#"):
            settings[match.group(1)] = match.group(2)
    return settings


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _pgbackrest(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEPLOY / name)
    return parser


def test_the_compose_server_archives_with_the_settings_of_the_plain_hosts_snippet():
    command = _compose()["services"]["postgres"]["command"]
    flags = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "-c")
    flags.pop("config_file")
    assert flags == _snippet()


def test_both_configurations_keep_the_same_retention_and_name_conveyors_stanza():
    stanza = Settings().pgbackrest_stanza
    host, compose = _pgbackrest("pgbackrest.conf"), _pgbackrest("pgbackrest.compose.conf")
    assert [host.get("global", k) for k in RETENTION] == [compose.get("global", k) for k in RETENTION]
    assert int(host.get("global", "repo1-retention-full")) >= 2  # a full may be expired only behind another
    assert host.has_section(stanza) and compose.has_section(stanza)
    assert f"--stanza={stanza} " in _snippet()["archive_command"]


def test_the_backup_service_shares_the_servers_image_repository_and_configuration():
    services = _compose()["services"]
    server, job = services["postgres"], services["backup"]
    assert job["image"] == server["image"] and job["build"] == server["build"]
    shared = {"pgbackrest-repo:/var/lib/pgbackrest", "pgsocket:/var/run/postgresql",
              "./deploy/pgbackrest/pgbackrest.compose.conf:/etc/pgbackrest/pgbackrest.conf:ro"}
    assert shared <= set(server["volumes"]) and shared <= set(job["volumes"])
    assert "pgdata:/var/lib/postgresql/data:ro" in job["volumes"]
    assert (DEPLOY / "backup-schedule.sh").stat().st_mode & 0o111
