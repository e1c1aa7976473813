"""Amounts of money in ISO 4217 minor units: the one conversion each way for the whole house.

Stores keep integers of the currency's minor unit (cents for EUR, yen for JPY, fils for
BHD); clients and upstream events speak decimal strings. A currency's exponent comes from
`EXPONENTS` (two decimals unless listed).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from the usual two decimals.
EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}


class AmountError(ValueError):
    """A decimal string that is not an amount of the currency: says why."""


def exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has."""
    return EXPONENTS.get(currency, 2)


def to_minor(amount: str, currency: str) -> int:
    """The decimal string `amount` in minor units of `currency`, exactly: an amount finer
    than the currency's minor unit is refused, never rounded."""
    try:
        value = Decimal(amount)
    except InvalidOperation as error:
        raise AmountError(f"{amount!r} is not a decimal number") from error
    if not value.is_finite():
        raise AmountError(f"{amount!r} is not a decimal number")
    places = exponent(currency)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise AmountError(
            f"{amount} has more decimals than {currency} has (its minor unit is "
            f"{to_decimal(1, currency)})"
        )
    return int(minor)


def to_decimal(minor: int, currency: str) -> str:
    """`minor` units of `currency` as a decimal string with the currency's decimals: what
    `str(Decimal(minor).scaleb(-exponent))` gives, in integer arithmetic (a Decimal per amount
    was a noticeable share of an order page)."""
    places = exponent(currency)
    if not places:
        return str(minor)
    whole, part = divmod(abs(minor), 10**places)
    return f"{'-' if minor < 0 else ''}{whole}.{part:0{places}d}"
