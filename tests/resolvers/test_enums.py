"""The graph's enumerations read from stored values."""

from __future__ import annotations

import pytest

from resolvers import enums
from resolvers.enums import Channel, Stored


def test_of_gives_what_the_enum_call_gives() -> None:
    stored = [e for e in vars(enums).values() if isinstance(e, type) and issubclass(e, Stored)]
    assert len(stored) > 10
    for enum in stored:
        if enum is Stored:
            continue
        for member in enum:
            assert enum.of(member.value) is enum(member.value) is member


def test_of_refuses_a_value_of_no_member_as_the_enum_call_does() -> None:
    with pytest.raises(ValueError, match="'PIGEON' is not a valid Channel"):
        Channel.of("PIGEON")
    assert Channel.of(Channel.WEB) is Channel.WEB  # as Channel(Channel.WEB) is
