"""Money against real PostgreSQL and RabbitMQ (docs/money.md): currencies, rate and rule files
(refused whole, with line numbers), orders taxed and converted by the real workers, a missing
rate flagged then completed, the payment check on the stored total, the revenue report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from conveyor.db import money as db_money
from conveyor.schemas import money
from conveyor.workers import cli
from tests.support.lifecycle import authorized, created, send, statuses
from tests.support.workers import (
    event_tap,
    order_body,
    queue_depth,
    run_order,
    running_workers,
    set_stock,
    settings_for,
    take_all,
    wait_until,
)

FX_HEADER = "from,to,rate,valid_from,valid_to,source\n"
TAX_HEADER = "jurisdiction,category,rate_percent,valid_from,valid_to,source\n"


def conveyor(monkeypatch, database_url: str, *args: str) -> int:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    return cli.main(list(args))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rows(database_url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def placed(day: str) -> str:
    return f"{day}T12:00:00+00:00"


# --- currencies ------------------------------------------------------------------------------------

def test_the_seeded_currencies_are_the_modules(database_url):
    stored = dict(rows(database_url, "SELECT code::text, minor_units FROM orders.currencies"))
    assert stored == money.CURRENCIES
    assert (stored["JPY"], stored["EUR"], stored["BHD"]) == (0, 2, 3)


def test_sql_round_agrees_with_the_modules_half_up(database_url):
    cases = [("0.5", "JPY"), ("2.5", "JPY"), ("1.005", "EUR"), ("1.015", "EUR"), ("0.0005", "BHD")]
    for amount, currency in cases:
        units = money.CURRENCIES[currency]
        (sql,), = rows(database_url, "SELECT round(%s::numeric, %s)", (amount, units))
        assert sql == money.round_amount(Decimal(amount), currency), (amount, currency)


def test_a_jpy_price_with_decimals_is_dead_lettered_with_the_reason(database_url, fresh_amqp_url):
    body = {**order_body(("A", 1), price="1500.5"), "currency": "JPY"}
    set_stock(database_url, "A", 5)
    settings = settings_for(database_url, fresh_amqp_url)
    with running_workers(settings, ["orders"]):
        send(fresh_amqp_url, [created(body)])
        letters = take_all(fresh_amqp_url, "conveyor.orders.dlq", expect=1)
    assert len(letters) == 1
    assert "1500.5 JPY has more decimals than the currency allows (no decimals)" in json.dumps(
        {k: str(v) for k, v in (letters[0][1].headers or {}).items()})
    assert statuses(database_url) == {}


# --- fx load ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "reason"), [
    ("USD,EUR,0,2026-01-01,,ecb\n", "line 3: rate 0 for USD->EUR must be greater than zero"),
    ("USD,EUR,1.1,2026-01-01,,ecb\nGBP,EUR,-1.2,2026-01-01,,ecb\n",
     "line 4: rate -1.2 for GBP->EUR must be greater than zero"),
    ("USD,EUR,0.9,2026-01-01,2026-02-01,x\nUSD,EUR,0.91,2026-01-15,2026-03-01,x\n",
     "line 4: USD->EUR from 2026-01-15 overlaps line 3"),
    ("USD,XYZ,0.9,2026-01-01,,x\n", "line 3: unknown currency 'XYZ'"),
])
def test_a_bad_rate_file_is_refused_with_its_line_and_nothing_is_applied(monkeypatch, tmp_path, database_url,
                                                                          capsys, content, reason):
    path = write(tmp_path, "rates.csv", FX_HEADER + "CHF,EUR,0.95,2026-01-01,,ok\n" + content)
    assert conveyor(monkeypatch, database_url, "fx", "load", path, "--json") == cli.EXIT_FAILED
    report = json.loads(capsys.readouterr().out)
    assert any(p.startswith(reason) for p in report["problems"]), report  # header line 1, a good row line 2
    assert rows(database_url, "SELECT count(*) FROM orders.fx_rates") == [(0,)]


def test_a_rate_overlapping_a_stored_one_is_refused_and_a_next_day_closes_an_open_one(monkeypatch, tmp_path,
                                                                                     database_url, capsys):
    first = write(tmp_path, "a.csv", FX_HEADER + "USD,EUR,0.9,2026-01-01,2026-02-01,a\nGBP,EUR,1.1,2026-01-01,,a\n")
    assert conveyor(monkeypatch, database_url, "fx", "load", first) == cli.EXIT_OK
    clash = write(tmp_path, "b.csv", FX_HEADER + "GBP,EUR,1.2,2026-01-05,,b\nUSD,EUR,0.8,2026-01-20,,b\n")
    capsys.readouterr()
    assert conveyor(monkeypatch, database_url, "fx", "load", clash) == cli.EXIT_FAILED
    assert ("line 3: USD->EUR from 2026-01-20 overlaps the stored range 2026-01-01 to 2026-02-01"
            in capsys.readouterr().out)
    assert rows(database_url, "SELECT count(*) FROM orders.fx_rates WHERE valid_to IS NULL") == [(1,)]
    nextday = write(tmp_path, "c.csv", FX_HEADER + "GBP,EUR,1.2,2026-01-05,,b\n")
    assert conveyor(monkeypatch, database_url, "fx", "load", nextday) == cli.EXIT_OK
    assert rows(database_url, "SELECT rate::text, valid_to::text FROM orders.fx_rates WHERE from_currency = 'GBP'"
                              " ORDER BY valid_from") == [("1.100000000000", "2026-01-05"), ("1.200000000000", None)]


def test_an_ecb_daily_file_loads_euro_rates(monkeypatch, tmp_path, database_url):
    path = write(tmp_path, "eurofxref.csv", "Date, USD, JPY, BHD, \n02 January 2026, 1.0321, 163.06, N/A, \n")
    assert conveyor(monkeypatch, database_url, "fx", "load", path) == cli.EXIT_OK
    assert rows(database_url, "SELECT from_currency::text, to_currency::text, rate::text FROM orders.fx_rates"
                              " ORDER BY 2") == [("EUR", "JPY", "163.060000000000"), ("EUR", "USD", "1.032100000000")]


def test_a_missing_file_is_not_found(monkeypatch, tmp_path, database_url):
    assert conveyor(monkeypatch, database_url, "fx", "load", str(tmp_path / "nope.csv")) == cli.EXIT_NOT_FOUND


# --- tax load ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "reason"), [
    ("DE,standard,119,2026-01-01,,x\n", "line 3: rate_percent 119 is outside 0..100 %"),
    ("QQ,standard,19,2026-01-01,,x\n", "line 3: unknown country 'QQ'"),
    ("DE,reduced,7,2026-01-01,,x\nDE,reduced,5,2026-06-01,,x\n", "line 4: DE/reduced from 2026-06-01 overlaps line 3"),
])
def test_a_bad_tax_file_is_refused_with_its_line_and_nothing_is_applied(monkeypatch, tmp_path, database_url,
                                                                         capsys, content, reason):
    path = write(tmp_path, "tax.csv", TAX_HEADER + "FR,standard,20,2026-01-01,,ok\n" + content)
    assert conveyor(monkeypatch, database_url, "tax", "load", path, "--tenant", "shop", "--json") == cli.EXIT_FAILED
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any(p.startswith(reason) for p in problems), problems
    assert rows(database_url, "SELECT count(*) FROM inventory.tax_rules") == [(0,)]


# --- orders through the real workers ------------------------------------------------------------------

def configure(monkeypatch, tmp_path, database_url, *, tenant: str, prices: str, base: str = "EUR") -> None:
    tax = write(tmp_path, f"tax-{tenant}.csv", TAX_HEADER + "DE,standard,19,2026-01-01,,bmf\n"
                                                             "DE,reduced,7,2026-01-01,,bmf\n"
                                                             "US-CA,standard,7.25,2026-01-01,,cdtfa\n")
    assert conveyor(monkeypatch, database_url, "tax", "load", tax, "--tenant", tenant) == cli.EXIT_OK
    assert conveyor(monkeypatch, database_url, "tax", "prices", tenant, prices) == cli.EXIT_OK
    assert conveyor(monkeypatch, database_url, "fx", "base", tenant, base) == cli.EXIT_OK


def taxed_order(tenant: str, *, currency: str = "EUR", day: str = "2026-03-02", country: str = "DE") -> dict:
    body = order_body(("A", 2), ("B", 1), tenant_id=tenant, price="10.00")
    body["items"][1]["tax_category"] = "reduced"
    return {**body, "currency": currency, "placed_at": placed(day), "ship_to": {"country": country}}


def test_exclusive_prices_add_the_tax_and_payment_must_match_the_gross(monkeypatch, tmp_path, database_url,
                                                                      fresh_amqp_url):
    configure(monkeypatch, tmp_path, database_url, tenant="shop-x", prices="exclusive")
    set_stock(database_url, "A", 10, tenant="shop-x")
    set_stock(database_url, "B", 10, tenant="shop-x")
    order = taxed_order("shop-x")
    settings = settings_for(database_url, fresh_amqp_url)
    with event_tap(fresh_amqp_url) as tap, running_workers(settings, ["orders", "payments", "relay"]):
        send(fresh_amqp_url, [created(order)])
        wait_until(lambda: statuses(database_url).get(order["order_id"]) == "RESERVED", message="reserved")
        send(fresh_amqp_url, [authorized(order, amount="30.00")])  # the net: refused
        assert len(take_all(fresh_amqp_url, "conveyor.payments.dlq", expect=1)) == 1
        send(fresh_amqp_url, [authorized(order, amount="34.50")])  # 20 + 3.80 + 10 + 0.70
        wait_until(lambda: statuses(database_url).get(order["order_id"]) == "PAID", message="paid")
        events = [json.loads(b) for _, _, b in take_all(fresh_amqp_url, tap, expect=2)]
    reserved = next(e for e in events if "lines" in e and "net" in e)
    assert (reserved["net"], reserved["tax"], reserved["gross"], reserved["total"]) == ("30.00", "4.50", "34.50",
                                                                                        "34.50")
    assert rows(database_url, "SELECT total::text, net_total::text, tax_total::text, tax_jurisdiction,"
                              " base_total::text, fx_missing FROM orders.orders") == [
        ("34.5000", "30.0000", "4.5000", "DE", "34.5000", False)]
    assert rows(database_url, "SELECT tax_category, tax_rate::text, tax_amount::text FROM orders.order_lines"
                              " ORDER BY line_no") == [("standard", "19.000000", "3.8000"),
                                                        ("reduced", "7.000000", "0.7000")]


def test_inclusive_prices_keep_the_total_and_split_out_the_tax(monkeypatch, tmp_path, database_url):
    configure(monkeypatch, tmp_path, database_url, tenant="shop-i", prices="inclusive")
    set_stock(database_url, "A", 10, tenant="shop-i")
    set_stock(database_url, "B", 10, tenant="shop-i")
    assert run_order(database_url, taxed_order("shop-i")) == "reserved"
    # 20.00 incl. 19 %: tax 3.19 (20 × 19/119 = 3.193…); 10.00 incl. 7 %: tax 0.65 (0.654…)
    assert rows(database_url, "SELECT total::text, net_total::text, tax_total::text FROM orders.orders") == [
        ("30.0000", "26.1600", "3.8400")]


def test_a_region_rule_wins_and_a_tenant_without_rules_keeps_todays_total(monkeypatch, tmp_path, database_url):
    configure(monkeypatch, tmp_path, database_url, tenant="shop-us", prices="exclusive", base="USD")
    set_stock(database_url, "A", 10, tenant="shop-us")
    set_stock(database_url, "B", 10, tenant="shop-us")
    set_stock(database_url, "A", 10)
    order = {**taxed_order("shop-us", currency="USD"), "ship_to": {"country": "US", "region": "CA"}}
    assert run_order(database_url, order) == "reserved"
    plain = order_body(("A", 3), price="2.50")
    assert run_order(database_url, plain) == "reserved"
    assert sorted(rows(database_url, "SELECT tenant_id, total::text, tax_total::text, tax_jurisdiction"
                                     " FROM orders.orders")) == [
        ("default", "7.5000", None, None), ("shop-us", "31.4500", "1.4500", "US-CA")]  # no US-CA reduced rule


def test_the_base_total_uses_the_rate_of_the_orders_day_and_records_it(monkeypatch, tmp_path, database_url):
    rates = write(tmp_path, "r.csv", FX_HEADER + "USD,EUR,0.9,2026-03-01,2026-03-02,ecb\n"
                                                 "EUR,USD,1.25,2026-03-02,,ecb\n")
    assert conveyor(monkeypatch, database_url, "fx", "load", rates) == cli.EXIT_OK
    set_stock(database_url, "A", 10)
    for day in ("2026-03-01", "2026-03-05"):
        body = {**order_body(("A", 1), price="10.01"), "currency": "USD", "placed_at": placed(day)}
        assert run_order(database_url, body) == "reserved"
    assert rows(database_url, "SELECT placed_at::date::text, base_currency::text, base_total::text, fx_rate::text,"
                              " fx_rate_id IS NOT NULL, fx_missing FROM orders.orders ORDER BY placed_at") == [
        ("2026-03-01", "EUR", "9.0100", "0.900000000000", True, False),   # 10.01 × 0.9 = 9.009
        ("2026-03-05", "EUR", "8.0100", "0.800000000000", True, False)]   # 10.01 / 1.25 = 8.008


def test_an_order_without_a_rate_is_flagged_then_completed_by_backfill(monkeypatch, tmp_path, database_url,
                                                                       capsys):
    set_stock(database_url, "A", 10)
    body = {**order_body(("A", 2), price="1000"), "currency": "JPY", "placed_at": placed("2026-04-01")}
    assert run_order(database_url, body) == "reserved"  # processed, not blocked
    assert rows(database_url, "SELECT base_total, fx_missing FROM orders.orders") == [(None, True)]
    rates = write(tmp_path, "jpy.csv", FX_HEADER + "EUR,JPY,160,2026-03-01,,ecb\n")
    assert conveyor(monkeypatch, database_url, "fx", "load", rates) == cli.EXIT_OK
    capsys.readouterr()
    assert conveyor(monkeypatch, database_url, "fx", "backfill", "--json") == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["completed"] == 1
    assert rows(database_url, "SELECT base_total::text, fx_missing FROM orders.orders") == [("12.5000", False)]


def test_the_revenue_report_is_in_the_base_currency_from_the_daily_summaries(monkeypatch, tmp_path, database_url,
                                                                             capsys):
    rates = write(tmp_path, "r.csv", FX_HEADER + "USD,EUR,0.5,2000-01-01,,test\n")
    assert conveyor(monkeypatch, database_url, "fx", "load", rates) == cli.EXIT_OK
    set_stock(database_url, "A", 10)
    for currency, price in (("EUR", "3.00"), ("USD", "10.00"), ("GBP", "1.00")):
        body = {**order_body(("A", 1), price=price), "currency": currency}
        assert run_order(database_url, body) == "reserved"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT maintenance.conveyor_refresh_summaries(current_date - 1)")
        (row,) = db_money.revenue(conn)
    assert (row.status, row.base_currency, row.orders, row.amount, row.unconverted) == (
        "RESERVED", "EUR", 3, Decimal("8.0000"), 1)  # 3 + 10 × 0.5; the GBP order has no rate yet
    capsys.readouterr()
    assert conveyor(monkeypatch, database_url, "report", "revenue", "--tenant", "default", "--json") == cli.EXIT_OK
    (reported,) = json.loads(capsys.readouterr().out)
    assert (reported["amount"], reported["currency"], reported["unconverted_orders"]) == ("8.0000", "EUR", 1)


def test_nothing_dead_letters_for_orders_in_the_base_currency(database_url, fresh_amqp_url):
    set_stock(database_url, "A", 5)
    order = order_body(("A", 1))
    with running_workers(settings_for(database_url, fresh_amqp_url), ["orders"]):
        send(fresh_amqp_url, [created(order)])
        wait_until(lambda: statuses(database_url).get(order["order_id"]) == "RESERVED", message="reserved")
    assert queue_depth(fresh_amqp_url, "conveyor.orders.dlq") == 0
