"""``conveyor catalog import|search|export`` against a real PostgreSQL (docs/catalogue.md): files
applied all or nothing with every bad line named, idempotent re-imports, ranked typo-tolerant
search in the tenant's text-search configuration, and an export that imports back unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from conveyor.workers import cli
from tests.support.workers import ROOT

HEADER = "sku,name,description,price,currency,attributes\n"
GOOD = [
    'JK-1,Blue Cotton Jacket,A warm jacket for winter,59.90,EUR,"{""brand"": ""Acme"", ""colour"": ""blue""}"\n',
    'JK-2,Red Wool Jacket,Cosy and warm,79.00,EUR,"{""brand"": ""Acme"", ""colour"": ""red""}"\n',
    'SH-1,Running Shoes,Fast shoes,12000,JPY,{}\n',
    'HT-1,Green Jacket Hat,A hat,9.5,EUR,"{""brand"": ""Nord"", ""colour"": ""green""}"\n',
]


@pytest.fixture
def run(database_url, monkeypatch, capsys):
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

    def invoke(*args: str) -> tuple[int, object, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        try:
            return code, json.loads(out), err
        except ValueError:
            return code, out, err
    return invoke


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def products(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT tenant_id, sku, name, description, price::text, currency, attributes "
                            "FROM inventory.products ORDER BY tenant_id, sku").fetchall()


def test_a_csv_is_imported_then_a_second_import_changes_nothing(run, tmp_path, database_url):
    path = write(tmp_path, "p.csv", HEADER + "".join(GOOD))

    code, first, _ = run("catalog", "import", path, "--json")
    before = products(database_url)
    code2, second, _ = run("catalog", "import", path, "--json")

    assert (code, code2) == (0, 0)
    assert (first["inserted"], first["updated"], first["unchanged"]) == (4, 0, 0)
    assert (second["inserted"], second["updated"], second["unchanged"]) == (0, 0, 4)
    assert products(database_url) == before
    assert before[0][1:] == ("HT-1", "Green Jacket Hat", "A hat", "9.5000", "EUR", {"brand": "Nord", "colour": "green"})


def test_a_changed_line_updates_only_its_product(run, tmp_path):
    run("catalog", "import", write(tmp_path, "p.csv", HEADER + "".join(GOOD)), "--json")
    changed = GOOD[:1] + [GOOD[1].replace("79.00", "75.00")] + GOOD[2:]

    code, result, _ = run("catalog", "import", write(tmp_path, "q.csv", HEADER + "".join(changed)), "--json")

    assert code == 0, result
    assert (result["inserted"], result["updated"], result["unchanged"]) == (0, 1, 3)


def test_json_lines_with_tenants_are_imported(run, tmp_path, database_url):
    lines = [{"sku": "A", "name": "Teapot", "price": "12.5", "currency": "GBP", "attributes": {"size": 2},
              "tenant_id": "shop-2"},
             {"sku": "B", "name": "Kettle", "price": "30", "currency": "KWD", "description": "steel"}]
    path = write(tmp_path, "p.jsonl", "".join(json.dumps(x) + "\n" for x in lines))

    code, result, _ = run("catalog", "import", path, "--json")

    assert code == 0 and result["inserted"] == 2
    assert [(r[0], r[1]) for r in products(database_url)] == [("default", "B"), ("shop-2", "A")]


@pytest.mark.parametrize(("line", "reason"), [
    ('JK-9,Thing,,19.999,EUR,{}\n', "has 3 decimals: EUR has 2 minor units"),
    ('JK-9,Thing,,100.5,JPY,{}\n', "JPY has 0 minor units"),
    ('JK-9,Thing,,19.90,EURO,{}\n', "is not an ISO 4217 code"),
    ('JK-9,Thing,,19.90,XYZ,{}\n', "not a known currency"),
    ('JK-9,Thing,,-1,EUR,{}\n', "is not a decimal string"),
    ('JK-9,,,1,EUR,{}\n', "name is missing"),
    ('JK-9,Thing,,1,EUR,[1]\n', "attributes must be a JSON object"),
    ('JK-9,Thing,,1,EUR,"{""a"": 1, ""a"": 2}"\n', "duplicate key 'a'"),
    ('JK-9,Thing,,1,EUR\n', "5 fields, the header has 6"),
    ('JK-1,Again,,1,EUR,{}\n', "duplicate SKU 'JK-1' (first on line 2)"),
])
def test_a_bad_line_is_named_with_its_number_and_nothing_is_applied(run, tmp_path, database_url, line, reason):
    path = write(tmp_path, "p.csv", HEADER + "".join(GOOD[:2]) + line + "".join(GOOD[2:]))

    code, result, _ = run("catalog", "import", path, "--json")

    assert code == 1
    assert result["applied"] == 0
    assert [b["line"] for b in result["bad_lines"]] == [4]
    assert reason in result["bad_lines"][0]["reason"]
    assert products(database_url) == []


def test_every_bad_line_is_reported_on_stderr(run, tmp_path):
    path = write(tmp_path, "p.csv", HEADER + GOOD[0] + 'X,,,1,EUR,{}\n' + GOOD[1] + 'Y,Y,,1.234,EUR,{}\n')

    code, _, err = run("catalog", "import", path)

    assert code == 1
    assert f"{path}:3: name is missing" in err and f"{path}:5: price '1.234' has 3 decimals" in err


@pytest.mark.parametrize(("content", "line", "reason"), [
    (b"sku,title,price,currency\nA,B,1,EUR\n", 1, "unknown column(s) 'title'"),
    (b"sku,name,price\nA,B,1\n", 1, "missing column(s) currency"),
    (HEADER.encode() + GOOD[0].encode() + b"JK-5,Caf\xe9,,1,EUR,{}\n", 3, "not UTF-8"),
    (HEADER.encode() + b'JK-5,"unclosed,,1,EUR,{}\n', 2, "CSV"),
    (b"", 1, "empty"),
])
def test_an_unreadable_file_exits_2_naming_the_line(run, tmp_path, database_url, content, line, reason):
    path = write(tmp_path, "p.csv", content)

    code, result, err = run("catalog", "import", path, "--json")

    assert code == 2, err
    assert result["line"] == line and reason in result["reason"]
    assert products(database_url) == []


def test_a_missing_file_exits_2(run, tmp_path):
    code, _, err = run("catalog", "import", str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read the file" in err


def test_skip_invalid_applies_the_good_lines_and_writes_the_refused_ones(run, tmp_path, database_url):
    bad = 'JK-7,Thing,,1.001,EUR,{}\n'
    path = write(tmp_path, "p.csv", HEADER + GOOD[0] + bad + "".join(GOOD[1:]) + GOOD[0])

    code, result, _ = run("catalog", "import", path, "--skip-invalid", "--json")

    assert code == 0
    assert (result["inserted"], result["refused"]) == (4, 2)
    assert [b["line"] for b in result["bad_lines"]] == [3, 7]
    with open(result["rejects_file"], encoding="utf-8") as rejects:
        assert rejects.read() == HEADER + bad + GOOD[0]
    assert len(products(database_url)) == 4


def test_search_ranks_by_relevance_and_tolerates_typos(run, tmp_path):
    run("catalog", "import", write(tmp_path, "p.csv", HEADER + "".join(GOOD)), "--json")

    _, exact, _ = run("catalog", "search", "blue jacket", "--json")
    _, typo, _ = run("catalog", "search", "blu jaket", "--json")
    _, one, _ = run("catalog", "search", "jacket", "--json")

    assert [r["sku"] for r in exact["results"]] == ["JK-1"]
    assert [r["sku"] for r in typo["results"]] == ["JK-1"]
    # the name (weight A) outranks a description-only match
    assert {r["sku"] for r in one["results"]} == {"JK-1", "JK-2", "HT-1"}
    assert one["results"][0]["rank"] >= one["results"][-1]["rank"]


def test_search_filters_by_attribute_containment(run, tmp_path):
    run("catalog", "import", write(tmp_path, "p.csv", HEADER + "".join(GOOD)), "--json")

    _, red, _ = run("catalog", "search", "jacket", "--attr", "colour=red", "--json")
    _, both, _ = run("catalog", "search", "jacket", "--attr", "brand=Acme", "--attr", "colour=blue", "--json")

    assert [r["sku"] for r in red["results"]] == ["JK-2"]
    assert [r["sku"] for r in both["results"]] == ["JK-1"]


def test_search_uses_the_tenants_text_search_configuration(run, tmp_path, database_url):
    lines = [{"sku": "T1", "name": "Die laufenden Schuhe", "price": "1", "currency": "EUR", "tenant_id": "de"}]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO inventory.tenants (tenant_id, name, text_search_config) "
                     "VALUES ('de', 'DE', 'german')")
    run("catalog", "import", write(tmp_path, "p.jsonl", json.dumps(lines[0]) + "\n"), "--json")

    _, stemmed, _ = run("catalog", "search", "Schuh", "--tenant", "de", "--json")
    with psycopg.connect(database_url, autocommit=True) as conn:  # a change of configuration rewrites the vectors
        conn.execute("UPDATE inventory.tenants SET text_search_config = 'simple' WHERE tenant_id = 'de'")
        vector = conn.execute("SELECT search::text FROM inventory.products WHERE sku = 'T1'").fetchone()[0]

    assert [r["sku"] for r in stemmed["results"]] == ["T1"]
    assert "'die'" in vector  # 'simple' keeps the German stop word that 'german' drops


def test_search_for_an_unknown_tenant_exits_4(run):
    code, result, _ = run("catalog", "search", "x", "--tenant", "nobody", "--json")
    assert code == 4 and result["error"] == "not_found"


def test_products_made_by_stock_set_are_searchable(run):
    assert run("stock", "set", "Widget-9", "3")[0] == 0

    _, found, _ = run("catalog", "search", "Widget-9", "--json")

    assert [r["sku"] for r in found["results"]] == ["Widget-9"]


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_an_export_imports_back_unchanged(run, tmp_path, database_url, file_format):
    run("catalog", "import", write(tmp_path, "p.csv", HEADER + "".join(GOOD)), "--json")
    out = str(tmp_path / f"export.{file_format}")

    assert run("catalog", "export", "--format", file_format, "-o", out)[0] == 0
    code, again, _ = run("catalog", "import", out, "--json")

    assert code == 0 and (again["rows"], again["unchanged"]) == (4, 4)


def test_exit_codes_from_a_real_process(database_url, tmp_path):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url,
           "CONVEYOR_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F"}

    def conveyor(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "conveyor", "catalog", *args], env=env, cwd=ROOT,
                              capture_output=True, timeout=60).returncode

    good = write(tmp_path, "good.csv", HEADER + GOOD[0])
    bad = write(tmp_path, "bad.csv", HEADER + 'A,,,1,EUR,{}\n')
    assert [conveyor("import", good), conveyor("import", bad), conveyor("import", str(tmp_path / "none")),
            conveyor("search", "x", "--limit", "0")] == [0, 1, 2, 2]
