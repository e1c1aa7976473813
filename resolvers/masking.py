"""How personal data looks to a role that may know it exists but not read it (`analyst`).

Each mask keeps just enough to recognise the shape of a value (the domain of an email, the
country code and last digits of a phone) and stars the rest, one star per hidden character.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Mask = Callable[[Any], Any]


def _stars(text: str, keep_start: int, keep_end: int) -> str:
    if len(text) <= keep_start + keep_end:
        return "*" * len(text)
    hidden = len(text) - keep_start - keep_end
    return text[:keep_start] + "*" * hidden + (text[-keep_end:] if keep_end else "")


def mask_email(value: str) -> str:
    """`jane.doe@example.com` → `j***@example.com`: the first letter and the domain."""
    local, at, domain = value.partition("@")
    return f"{local[:1]}***{at}{domain}"


def mask_phone(value: str) -> str:
    """`+447700900321` → `+44*******321`: the country code and the last three digits."""
    return _stars(value, 3, 3)


def mask_street(value: str) -> str:
    """`221B Baker Street` → `2*** B**** S*****`: the first character of each word."""
    return " ".join(_stars(word, 1, 0) for word in value.split(" "))


def mask_identifier(value: str) -> str:
    """`LOY00012345` → `LO*******45`: enough to tell identifiers apart, not to use one."""
    return _stars(value, 2, 2)


def withhold(value: Any) -> None:
    """No partial form says less than the whole (a birth date): masked means null."""
    return None
