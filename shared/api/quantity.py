"""Kubernetes resource quantities ("100m", "1Gi", "1e3") as exact decimals.

Why this exists: the apiserver, scheduler and kubelet all need to compare and
add resource amounts exactly the way Kubernetes does (apimachinery
``pkg/api/resource/quantity.go``), never through floats, and the apiserver must
store them in Kubernetes' canonical string form ("0.5" is stored as "500m",
"1.5Gi" as "1536Mi") so that kubectl and the Python client see what a real
cluster would return.

Public API:

* ``parse_quantity(q)`` -> ``Decimal`` (raises ``ValueError`` on bad input)
* ``canonical_quantity(q, round_to_milli=False)`` -> canonical string
* ``QUANTITY_REGEX`` -> the regular expression quoted in Kubernetes' errors
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Final

__all__ = [
    "QUANTITY_REGEX",
    "canonical_quantity",
    "parse_quantity",
    "parse_quantity_with_format",
]

QUANTITY_REGEX: Final = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"

DECIMAL_SI: Final = "DecimalSI"
BINARY_SI: Final = "BinarySI"
DECIMAL_EXPONENT: Final = "DecimalExponent"

_DEC_SUFFIXES: Final[dict[str, int]] = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}
_DEC_BY_EXP: Final[dict[int, str]] = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_SUFFIXES: Final[dict[str, int]] = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BIN_BY_EXP: Final[dict[int, str]] = {0: "", **{v // 10: k for k, v in _BIN_SUFFIXES.items()}}
_SUFFIX_CHARS: Final = frozenset("eEinumkKMGTP")
_DIGITS: Final = frozenset("0123456789")
_NANO: Final = Decimal("1e-9")
_MILLI: Final = Decimal("1e-3")
_MAX_INT64: Final = Decimal(2**63 - 1)
_CTX: Final = decimal.Context(prec=200, Emax=10**6, Emin=-(10**6))


def _format_error() -> ValueError:
    return ValueError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")


def _scan(s: str) -> tuple[bool, str, str, str]:
    """Split like Kubernetes' parseQuantityString: (positive, num, denom, suffix)."""
    positive = True
    pos, end = 0, len(s)
    if pos < end and s[0] in "+-":
        positive = s[0] == "+"
        pos += 1
    while pos < end and s[pos] == "0":
        pos += 1
    start = pos
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    num = s[start:pos] or "0"
    denom = ""
    if pos < end and s[pos] == ".":
        pos += 1
        start = pos
        while pos < end and s[pos] in _DIGITS:
            pos += 1
        denom = s[start:pos]
    suffix_start = pos
    while pos < end and s[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    if pos != end:
        raise _format_error()
    return positive, num, denom, s[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, str]:
    """Return (base, exponent, format) for a suffix, as Kubernetes' suffixer does."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        rest = suffix[1:]
        body = rest[1:] if rest[0] in "+-" else rest
        if body and all(c in _DIGITS for c in body):
            return 10, int(rest), DECIMAL_EXPONENT
    raise ValueError("unable to parse quantity's suffix")


def parse_quantity_with_format(q: str | int | float) -> tuple[Decimal, str]:
    """Parse a quantity and also return the format Kubernetes remembers for it."""
    if isinstance(q, bool):
        raise ValueError(f"invalid quantity {q!r}")
    if isinstance(q, int):
        text = str(q)
    elif isinstance(q, float):
        if q != q or q in (float("inf"), float("-inf")):
            raise ValueError(f"invalid quantity {q!r}")
        text = repr(q)
    elif isinstance(q, str):
        text = q.strip()
    else:
        raise ValueError(f"invalid quantity {q!r}")
    if not text:
        raise _format_error()
    if text == "0":
        return Decimal(0), DECIMAL_SI
    positive, num, denom, suffix = _scan(text)
    base, exponent, fmt = _interpret(suffix)
    with decimal.localcontext(_CTX):
        amount = Decimal(f"{num}.{denom or '0'}")
        if base == 10:
            amount = amount.scaleb(exponent)
        else:
            amount = amount * (2**exponent)
        exp = amount.as_tuple().exponent
        if amount != 0 and isinstance(exp, int) and exp < -9:
            # Kubernetes rounds anything finer than 1n *up* (away from zero).
            amount = amount.quantize(_NANO, rounding=decimal.ROUND_UP)
        if fmt == BINARY_SI and amount > _MAX_INT64:
            amount = _MAX_INT64
        if fmt == BINARY_SI and 0 < amount < 1:
            fmt = DECIMAL_SI
        if not positive:
            amount = -amount
        amount = _tidy(amount)
    return amount, fmt


def _tidy(value: Decimal) -> Decimal:
    """Drop insignificant zeros so results print naturally (1000, 0.1, 1.5)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def parse_quantity(q: str | int | float) -> Decimal:
    """Parse a Kubernetes quantity ("100m", "1Gi", "1e3", 2, 1.5) into an exact Decimal.

    Raises ``ValueError`` for anything Kubernetes' ``resource.ParseQuantity`` rejects
    (e.g. "1x", "1K", "", "Gi").
    """
    return parse_quantity_with_format(q)[0]


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """Return (mantissa, exponent) with value == mantissa * 10**exponent, mantissa minimal."""
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    mantissa = int("".join(map(str, digits)) or "0")
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    return (-mantissa if sign else mantissa), exp


def _format(value: Decimal, fmt: str) -> str:
    if value == 0:
        return "0"
    if fmt == BINARY_SI:
        if -1024 < value < 1024 or value != value.to_integral_value():
            fmt = DECIMAL_SI
        else:
            amount = int(value)
            negative = amount < 0
            amount = abs(amount)
            times = 0
            while amount >= 1024 and amount % 1024 == 0 and times < 6:
                amount //= 1024
                times += 1
            return ("-" if negative else "") + str(amount) + _BIN_BY_EXP[times]
    mantissa, exp = _decimal_parts(value)
    rem = exp % 3
    if rem:
        mantissa *= 10**rem
        exp -= rem
    if fmt == DECIMAL_EXPONENT:
        return str(mantissa) + (f"e{exp}" if exp else "")
    if exp in _DEC_BY_EXP:
        return str(mantissa) + _DEC_BY_EXP[exp]
    # Beyond "E": Kubernetes has no suffix; keep the value exact with an exponent.
    return f"{mantissa}e{exp}"


def _is_canonical_input(text: str, fmt: str) -> bool:
    """Kubernetes keeps the caller's string verbatim when it is already canonical."""
    try:
        _, num, denom, suffix = _scan(text)
        base, exponent, _ = _interpret(suffix)
    except ValueError:
        return False
    if fmt == BINARY_SI:
        if denom or exponent < 0:
            return False
        return int(num) & 0x07 != 0
    shifted = num + denom
    scale = exponent - len(denom)
    if base != 10 or len(shifted) > 18 or scale < -9:
        return False
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def canonical_quantity(q: str | int | float, round_to_milli: bool = False) -> str:
    """Return the string Kubernetes would serialize for quantity ``q``.

    With ``round_to_milli`` the value is first rounded up to 1m, as the apiserver
    does for every ResourceList (container requests/limits, node capacity, ...).
    Raises ``ValueError`` if ``q`` is not a valid quantity.
    """
    value, fmt = parse_quantity_with_format(q)
    text = q.strip() if isinstance(q, str) else None
    if round_to_milli and value != value.quantize(_MILLI, rounding=decimal.ROUND_UP):
        with decimal.localcontext(_CTX):
            value = value.quantize(_MILLI, rounding=decimal.ROUND_UP)
        text = None
    if text is not None and text != "0" and _is_canonical_input(text, fmt):
        return text
    return _format(value, fmt)
