"""Keyset pagination shared by every paginated source: page keys, positions and pages."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the sort timestamp and a tie-breaking id of its last item."""

    at: dt.datetime
    id: str


@dataclass(frozen=True, slots=True)
class PageKey:
    """One page request for one owner; requests sharing all but `owner` batch together."""

    owner: int
    first: int
    after: Position | None = None
    filters: tuple[str, ...] = ()

    def batch_group(self) -> tuple[int, Position | None, tuple[str, ...]]:
        return (self.first, self.after, self.filters)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    total_count: int | None = None
    positions: list[Position] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PageRow(Generic[T]):
    """One row of a batched page query: an item and its position, or just a total."""

    owner: int
    item: T | None
    position: Position | None
    total: int | None = None


class CursorError(ValueError):
    """A cursor that c360 did not make."""


@functools.lru_cache(maxsize=65_536)
def encode_cursor(position: Position) -> str:
    """An opaque cursor for a position (clients must not parse it). Remembered: the same pages
    are served again and again, and their cursors cost more to write than to look up."""
    raw = orjson.dumps([position.at.isoformat(), position.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position of a cursor made by `encode_cursor`, or CursorError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, ident = orjson.loads(raw)
        at = dt.datetime.fromisoformat(at)
        # c360's positions are aware, in UTC: a naive time cannot be compared with them, and
        # one that has no UTC form (year 1 at +02:00) fails in the store.
        if at.tzinfo is None:
            raise ValueError("a position's time carries its zone")
        return Position(at=at.astimezone(dt.UTC), id=str(ident))
    except (binascii.Error, ValueError, TypeError, OverflowError) as error:
        raise CursorError(f"invalid cursor {cursor!r}") from error


async def group_pages(
    keys: Sequence[PageKey],
    run: Callable[[list[int], PageKey], Awaitable[Iterable[PageRow[T]]]],
    *,
    counted: bool,
) -> list[Page[T]]:
    """Answer page keys with one `run` per group of keys that differ only by owner.

    `run(owners, template)` yields rows newest first, at most `first + 1` items per owner (the
    extra one only tells that a next page exists); a row with no item carries only the total.
    With `counted`, an owner with no rows has a total of 0 rather than unknown.
    """
    groups: dict[tuple[int, Position | None, tuple[str, ...]], list[PageKey]] = {}
    for key in keys:
        groups.setdefault(key.batch_group(), []).append(key)
    found: dict[PageKey, Page[T]] = {}
    for members in groups.values():
        template = members[0]
        rows: dict[int, list[tuple[T, Position]]] = {}
        totals: dict[int, int | None] = {}
        for row in await run([k.owner for k in members], template):
            totals[row.owner] = row.total
            if row.item is not None and row.position is not None:
                rows.setdefault(row.owner, []).append((row.item, row.position))
        for key in members:
            owned = rows.get(key.owner, [])
            shown = owned[: key.first]
            found[key] = Page(
                items=[item for item, _ in shown],
                has_next=len(owned) > key.first,
                total_count=totals.get(key.owner, 0 if counted else None),
                positions=[position for _, position in shown],
            )
    return [found[key] for key in keys]
