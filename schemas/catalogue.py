"""A catalogue file's lines (``conveyor catalog import``): read, checked, one product each.

Pure: no database. :func:`read_products` streams a CSV (with a header) or JSON Lines file in
binary and yields one :class:`Line` per record, either a :class:`Product` or the reason it is
refused, with the number of the line it starts on. What makes the whole file unreadable (a
wrong header, bytes that are not UTF-8, an unclosed quote) raises :class:`FileRefused` instead:
nothing of such a file is applied, ``--skip-invalid`` or not. A SKU seen twice for a tenant is
refused on its second line, naming the first.

Money is a decimal string (``"19.90"``, never a JSON number) with no more decimals than the
currency's minor units allow; which currencies exist and their minor units come from the caller
(``conveyor.db.catalogue.currency_minor_units``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

Format = Literal["csv", "jsonl"]

REQUIRED = ("sku", "name", "price", "currency")
OPTIONAL = ("description", "attributes", "tenant_id")
FIELDS = REQUIRED + OPTIONAL
TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")
# At most 24 integer digits and 4 decimals: what numeric(28, 4) holds.
PRICE = re.compile(r"(?P<units>0|[1-9][0-9]{0,23})(?:\.(?P<fraction>[0-9]{1,4}))?")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
WORD = re.compile(r"[^\W_]{3,64}")
MAX_SKU, MAX_NAME, MAX_DESCRIPTION, MAX_ATTRIBUTES = 128, 500, 20_000, 20_000
# Attributes whose words feed typo correction (besides the name): docs/catalogue.md.
WORD_ATTRIBUTES = ("brand", "category")

# ISO 4217 (active codes) and their minor units: used until the database has its own table of
# currencies (conveyor.db.catalogue.currency_minor_units decides which).
_ISO_4217 = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
       "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
       "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP "
       "LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR "
       "NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
       "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG",
}
ISO_4217_MINOR_UNITS: dict[str, int] = {code: units for units, codes in _ISO_4217.items() for code in codes.split()}


class FileRefused(Exception):
    """The file as a whole cannot be read: nothing of it is applied (exit 2)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


class BadLine(ValueError):
    """One record is refused; the reason says why."""


@dataclass(frozen=True, slots=True)
class Product:
    tenant_id: str
    sku: str
    name: str
    description: str
    price: str  # the decimal string as given (checked)
    currency: str
    attributes: str  # a JSON object, as text
    words: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # the file line the record starts on (1 = the CSV header)
    raw: str  # the record's text as read, for the file of refused lines
    product: Product | None
    reason: str | None = None


def detect_format(path: str, first_bytes: bytes) -> Format:
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_products(stream: BinaryIO, *, file_format: Format, default_tenant: str,
                  minor_units: Mapping[str, int]) -> Iterator[Line]:
    """Every record of the file, checked, in order; duplicates of (tenant, SKU) refused."""
    reader = _read_csv if file_format == "csv" else _read_jsonl
    seen: dict[tuple[str, str], int] = {}
    for line in reader(stream, default_tenant=default_tenant, minor_units=minor_units):
        if line.product is not None:
            key = (line.product.tenant_id, line.product.sku)
            first = seen.setdefault(key, line.number)
            if first != line.number:
                line = Line(line.number, line.raw, None, f"duplicate SKU {key[1]!r} (first on line {first})")
        yield line


def check_product(fields: Mapping[str, Any], *, default_tenant: str, minor_units: Mapping[str, int],
                  attributes_as_text: bool) -> Product:
    """One record's fields as a product, or :class:`BadLine` with the first reason found."""
    sku = _text(fields, "sku", MAX_SKU, required=True)
    name = _text(fields, "name", MAX_NAME, required=True)
    description = _text(fields, "description", MAX_DESCRIPTION, required=False)
    tenant = fields.get("tenant_id") or default_tenant
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise BadLine(f"tenant_id {tenant!r} is not 1-64 of A-Z a-z 0-9 _ . -")
    currency = fields.get("currency")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise BadLine(f"currency {currency!r} is not an ISO 4217 code (3 upper-case letters)")
    if currency not in minor_units:
        raise BadLine(f"currency {currency!r} is not a known currency")
    price = check_price(fields.get("price"), currency, minor_units[currency])
    attributes, attribute_words = _attributes(fields.get("attributes"), as_text=attributes_as_text)
    words = tuple({*WORD.findall(name.lower()), *attribute_words})
    return Product(tenant, sku, name, description, price, currency, attributes, words)


def check_price(value: object, currency: str, minor_units: int) -> str:
    if not isinstance(value, str):
        raise BadLine(f"price must be a decimal string (\"19.90\"), not {type(value).__name__}"
                      if value is not None else "price is missing")
    match = PRICE.fullmatch(value)
    if not match:
        raise BadLine(f"price {value!r} is not a decimal string >= 0 with at most 24 digits and 4 decimals")
    decimals = len((match["fraction"] or "").rstrip("0"))
    if decimals > minor_units:
        raise BadLine(f"price {value!r} has {decimals} decimals: {currency} has {minor_units} minor units")
    return value


def _text(fields: Mapping[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise BadLine(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        raise BadLine(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise BadLine(f"{name} is longer than {limit} characters")
    if CONTROL.search(value):
        raise BadLine(f"{name} holds a control character")
    if value != value.strip():
        raise BadLine(f"{name} has leading or trailing white space")
    return value


def _attributes(value: object, *, as_text: bool) -> tuple[str, list[str]]:
    if value is None or value == "":
        return "{}", []
    if as_text:
        if not isinstance(value, str):
            raise BadLine("attributes must be a JSON object")
        if len(value) > MAX_ATTRIBUTES:
            raise BadLine(f"attributes are longer than {MAX_ATTRIBUTES} characters")
        try:
            parsed = _loads(value)
        except BadLine as exc:
            raise BadLine(f"attributes: {exc}") from None
    else:
        parsed = value
    if not isinstance(parsed, dict):
        raise BadLine("attributes must be a JSON object")
    text = value if isinstance(value, str) and "\\u0000" not in value else json.dumps(parsed, ensure_ascii=False)
    if "\\u0000" in text or "\x00" in text:
        raise BadLine("attributes hold a NUL character")
    words = [w for key in WORD_ATTRIBUTES if isinstance(parsed.get(key), str)
             for w in WORD.findall(parsed[key].lower())]
    return str(text), words


def _loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except BadLine:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadLine(f"not JSON ({str(exc)[:120]})") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise BadLine(f"duplicate key {key!r}")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise BadLine(f"{name} is not allowed")


# -- the two formats ----------------------------------------------------------------------------
def _decoded(stream: BinaryIO, counter: list[int], raw: list[str]) -> Iterator[str]:
    """The file's lines as text, counting them and keeping those of the current record."""
    for number, data in enumerate(stream, start=1):
        counter[0] = number
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileRefused(number, f"not UTF-8 (byte {exc.start + 1} of the line)") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        raw.append(text)
        yield text


def _read_csv(stream: BinaryIO, *, default_tenant: str, minor_units: Mapping[str, int]) -> Iterator[Line]:
    counter, raw = [0], []  # type: list[int], list[str]
    reader = csv.reader(_decoded(stream, counter, raw), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileRefused(1, "the file is empty: a CSV needs a header line") from None
    except csv.Error as exc:
        raise FileRefused(counter[0], f"CSV: {exc}") from None
    columns = _check_header(header)
    raw.clear()
    start = counter[0] + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileRefused(counter[0], f"CSV: {exc}") from None
        text, number = "".join(raw), start
        raw.clear()
        start = counter[0] + 1
        if not row:
            continue  # a blank line
        if len(row) != len(columns):
            yield Line(number, text, None, f"{len(row)} fields, the header has {len(columns)}")
            continue
        try:
            product = check_product(dict(zip(columns, row)), default_tenant=default_tenant,
                                    minor_units=minor_units, attributes_as_text=True)
        except BadLine as exc:
            yield Line(number, text, None, str(exc))
        else:
            yield Line(number, text, product)


def _check_header(header: list[str]) -> list[str]:
    columns = [c.strip() for c in header]
    unknown = [c for c in columns if c not in FIELDS]
    missing = [c for c in REQUIRED if c not in columns]
    doubled = sorted({c for c in columns if columns.count(c) > 1})
    if unknown or missing or doubled:
        parts = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"column(s) given twice {', '.join(doubled)}"] if doubled else [])
        raise FileRefused(1, f"wrong header: {'; '.join(parts)} (columns: {', '.join(FIELDS)})")
    return columns


def _read_jsonl(stream: BinaryIO, *, default_tenant: str, minor_units: Mapping[str, int]) -> Iterator[Line]:
    counter, raw = [0], []  # type: list[int], list[str]
    for text in _decoded(stream, counter, raw):
        raw.clear()
        if not text.strip():
            continue
        number = counter[0]
        try:
            document = _loads(text)
            if not isinstance(document, dict):
                raise BadLine("a line must be a JSON object")
            unknown = sorted(set(document) - set(FIELDS))
            if unknown:
                raise BadLine(f"unknown field(s) {', '.join(map(repr, unknown))}")
            product = check_product(document, default_tenant=default_tenant, minor_units=minor_units,
                                    attributes_as_text=False)
        except BadLine as exc:
            yield Line(number, text, None, str(exc))
        else:
            yield Line(number, text, product)
