"""Money amounts: minor units written as exact decimal strings."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from resolvers.common import Money, decimal_amount


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([0, 2, 3]))
def test_an_amount_is_the_decimal_of_its_minor_units(minor: int, exponent: int) -> None:
    # Minor units are 64-bit in the stores; Decimal's own 28 digits would round beyond that.
    assert decimal_amount(minor, exponent) == str(Decimal(minor).scaleb(-exponent))


def test_each_currency_has_its_minor_unit() -> None:
    assert Money.from_minor(1999, "EUR").amount == "19.99"
    assert Money.from_minor(-5, "USD").amount == "-0.05"
    assert Money.from_minor(0, "GBP").amount == "0.00"
    assert Money.from_minor(1999, "JPY").amount == "1999"
    assert Money.from_minor(1999, "KWD").amount == "1.999"
