"""Kubernetes quantity parsing and canonical formatting (resource.Quantity)."""

from decimal import Decimal

import pytest

from shared.api.quantity import canonical_quantity, parse_quantity

PARSE_CASES = [
    ("100m", Decimal("0.1")),
    ("1Gi", Decimal(1073741824)),
    ("1e3", Decimal(1000)),
    ("1E3", Decimal(1000)),
    ("1.5", Decimal("1.5")),
    (2, Decimal(2)),
    (1.5, Decimal("1.5")),
    ("0", Decimal(0)),
    ("1Ki", Decimal(1024)),
    ("1Mi", Decimal(1048576)),
    ("2Ti", Decimal(2 * 1024**4)),
    ("1Pi", Decimal(1024**5)),
    ("1Ei", Decimal(1024**6)),
    ("5n", Decimal("0.000000005")),
    ("5u", Decimal("0.000005")),
    ("1k", Decimal(1000)),
    ("1M", Decimal(10**6)),
    ("1G", Decimal(10**9)),
    ("1T", Decimal(10**12)),
    ("1P", Decimal(10**15)),
    ("1E", Decimal(10**18)),  # a bare "E" is exa, not an exponent
    ("12e6", Decimal(12 * 10**6)),
    ("1e-3", Decimal("0.001")),
    ("-1.5", Decimal("-1.5")),
    ("+2", Decimal(2)),
    (".5", Decimal("0.5")),
    ("1e-10", Decimal("0.000000001")),  # finer than 1n rounds up
    (" 250m ", Decimal("0.25")),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_quantity(text: str | int | float, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["1x", "1K", "", "1.2.3", "1e", "abc", "1Mi3", "--1", "1 Gi"])
def test_parse_quantity_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


@pytest.mark.parametrize("bad", [True, None, [1], float("nan")])
def test_parse_quantity_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)  # type: ignore[arg-type]


CANONICAL_CASES = [
    ("100m", "100m"),
    ("0.5", "500m"),
    ("1.5", "1500m"),
    ("1000m", "1"),
    ("2000m", "2"),
    ("1000", "1k"),
    ("1.5Gi", "1536Mi"),
    ("1024Mi", "1Gi"),
    ("0.5Gi", "512Mi"),
    ("1Gi", "1Gi"),
    ("128Mi", "128Mi"),
    ("1e3", "1e3"),
    ("12e6", "12e6"),
    ("1.0", "1"),
    (2, "2"),
    (0.5, "500m"),
    ("0", "0"),
    ("-1.5", "-1500m"),
    ("1E", "1E"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL_CASES)
def test_canonical_quantity(text: str | int | float, expected: str) -> None:
    assert canonical_quantity(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("100u", "1m"), ("0.0001", "1m"), ("1.5", "1500m"), ("1Gi", "1Gi")])
def test_canonical_quantity_rounds_resource_lists_to_milli(text: str, expected: str) -> None:
    assert canonical_quantity(text, round_to_milli=True) == expected
