"""Money rules in one place: ISO 4217 currencies and their minor units, ISO 3166-1 countries,
rounding, amounts checked against their currency, tax and FX arithmetic. Pure: no I/O.

Rounding is **half-up** (ties away from zero; every amount here is ≥ 0), to the currency's
minor units, everywhere: a line's tax, a converted total. It is what PostgreSQL's ``round()``
on ``numeric`` does, so the SQL paths (``conveyor fx backfill``, reports) and the intake agree
to the last digit. ``round_amount(..., mode=HALF_EVEN)`` exists for callers that need bankers'
rounding; Conveyor itself never uses it. docs/money.md has the rules.

``CURRENCIES`` is the data the migration V019 seeds ``orders.currencies`` with (a test holds
them equal). ``None`` minor units: ISO says "N.A." (metals, fund codes, XXX); amounts in those
keep the contract's 4 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

HALF_UP, HALF_EVEN = ROUND_HALF_UP, ROUND_HALF_EVEN
ROUNDING = HALF_UP
MAX_DECIMALS = 4  # the contract's money pattern

_TWO = ("AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
        "CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
        "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
        "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR "
        "PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP "
        "TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG")
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_NOT_APPLICABLE = "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX"

CURRENCIES: dict[str, int | None] = (
    {c: 2 for c in _TWO.split()} | {c: 0 for c in _ZERO.split()} | {c: 3 for c in _THREE.split()}
    | {c: 4 for c in _FOUR.split()} | {c: None for c in _NOT_APPLICABLE.split()})

COUNTRIES = frozenset((
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV "
    "BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES "
    "ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE "
    "IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY "
    "MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU "
    "NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM "
    "SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE "
    "VG VI VN VU WF WS YE YT ZA ZM ZW").split())

DEFAULT_BASE_CURRENCY = "EUR"      # a tenant's until set (inventory.tenants.base_currency's default)
DEFAULT_TAX_CATEGORY = "standard"  # a line's when neither the message nor the product names one


class MoneyError(ValueError):
    """An amount, rate or code that breaks the rules; the text says which and why."""


def minor_units(currency: str) -> int:
    """Decimals an amount in ``currency`` may have (4 where ISO says N.A.)."""
    if currency not in CURRENCIES:
        raise MoneyError(f"unknown currency {currency!r}: not an active ISO 4217 code")
    units = CURRENCIES[currency]
    return MAX_DECIMALS if units is None else units


def round_amount(amount: Decimal, currency: str, mode: str = ROUNDING) -> Decimal:
    """``amount`` rounded to ``currency``'s minor units (half-up unless told)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=mode)


def check_amount(amount: Decimal, currency: str, *, what: str = "amount") -> None:
    """Refuse an amount more precise than its currency: ``1500.5`` JPY, ``1.005`` EUR.
    Trailing zeros are not precision: ``1500.00`` JPY is 1500 yen."""
    units = minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-units), rounding=ROUND_HALF_UP):
        unit = "no decimals" if units == 0 else f"at most {units} decimal{'s' * (units > 1)}"
        raise MoneyError(f"{what} {amount:f} {currency} has more decimals than the currency allows ({unit})")


def check_country(code: str) -> None:
    if code not in COUNTRIES:
        raise MoneyError(f"unknown country {code!r}: not an ISO 3166-1 alpha-2 code")


def jurisdictions(country: str | None, region: str | None) -> list[str]:
    """The tax jurisdictions of a ship-to, most specific first: ``US-CA``, ``US``."""
    if country is None:
        return []
    return [f"{country}-{region}", country] if region else [country]


@dataclass(frozen=True, slots=True)
class LineTax:
    net: Decimal
    tax: Decimal
    gross: Decimal


def line_tax(amount: Decimal, rate_percent: Decimal | None, currency: str, *, inclusive: bool) -> LineTax:
    """One line's net, tax and gross. ``amount`` is price × quantity as entered: gross when
    prices include tax (the tax is the part of it: amount × r / (100 + r)), net otherwise
    (tax = amount × r / 100). The tax is rounded half-up to the currency; net + tax = gross."""
    if not rate_percent:
        return LineTax(amount, Decimal(0), amount)
    with localcontext() as ctx:
        ctx.prec = 60
        if inclusive:
            tax = round_amount(amount * rate_percent / (100 + rate_percent), currency)
            return LineTax(amount - tax, tax, amount)
        tax = round_amount(amount * rate_percent / 100, currency)
        return LineTax(amount, tax, amount + tax)


def convert(amount: Decimal, rate: Decimal, to_currency: str, *, inverse: bool = False) -> Decimal:
    """``amount`` at ``rate`` (× rate, or ÷ rate for a rate quoted the other way), rounded
    half-up to ``to_currency``: ``round(amount * rate, units)`` in SQL gives the same."""
    with localcontext() as ctx:
        ctx.prec = 60
        return round_amount(amount / rate if inverse else amount * rate, to_currency)
