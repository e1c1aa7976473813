"""Types and helpers shared by every domain: money, page info, page arguments, input errors,
mutation refusals."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar, cast

import strawberry
from graphql import GraphQLError

from domain.errors import ChangeRejectedError
from resolvers.context import Context, Loaders
from sources import money
from sources.cache.entity import Stale
from sources.dataloader import DataLoader
from sources.paging import CursorError, Page, PageKey, Position, decode_cursor, encode_cursor

Info = strawberry.Info[Context, Any]
K = TypeVar("K")
V = TypeVar("V")
E = TypeVar("E")


async def load(info: Info, loader: DataLoader[K, V], key: K) -> V:
    """`loader.load(key)`, noting in the response when the cache served it stale."""
    return cast(V, _fresh(info, await loader.load(key)))


async def load_many(info: Info, loader: DataLoader[K, V], keys: Sequence[K]) -> list[V]:
    """`loader.load_many(keys)`, in key order: many keys of one field, in one batch."""
    return [_fresh(info, value) for value in await loader.load_many(keys)]


async def load_each(info: Info, loader: DataLoader[K, V], keys: Sequence[K]) -> list[V | Exception]:
    """`load_many`, with each key's failure in its place instead of raised: for a list of
    independent answers (federation's representations), where one failed key must not fail
    the others."""
    values = await asyncio.gather(*[loader.load(key) for key in keys], return_exceptions=True)
    answers: list[V | Exception] = []
    for value in values:
        if isinstance(value, Exception):
            answers.append(value)
        elif isinstance(value, BaseException):  # cancelled: not a key's failure
            raise value
        else:
            answers.append(_fresh(info, value))
    return answers


# The metadata key under which a `loaded` field keeps its `Loaded`.
LOADED = "c360.loaded"
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Loaded:
    """A field whose value is one loader's value for a key of its parent, converted.

    `key(parent)` is the key (None: nothing to load, the value is `convert(parent, None)`);
    `loader(loaders)` the request's loader; `convert(parent, value)` the field's value from
    the loaded one (None when the source has none).
    """

    loader: Callable[[Loaders], DataLoader[Any, Any]]
    key: Callable[[Any], Any]
    convert: Callable[[Any, Any], Any]

    def finish(self, parent: Any, value: Any, info: Info) -> Any:
        """The field's value from what the loader gave (a stale value noted in the response)."""
        return self.convert(parent, _fresh(info, value))


def loaded(
    loader: Callable[[Loaders], DataLoader[Any, Any]],
    *,
    key: Callable[[Any], Any],
    **field_options: Any,
) -> Callable[[Callable[[Any, Any], R]], R]:
    """A field declared by what it loads: the decorated function converts the loaded value.

    graphql-core calls the async resolver made here. c360's engine reads the field's `Loaded`
    instead: it asks the loader and converts the value when it comes, with no coroutine per
    field (a list of order lines has one such field per line). `field_options` go to
    `strawberry.field`.
    """

    def declare(convert: Callable[[Any, Any], R]) -> R:
        spec = Loaded(loader, key, convert)

        async def resolve(self: Any, info: Info) -> Any:
            wanted = key(self)
            if wanted is None:
                return convert(self, None)
            return spec.finish(self, await loader(info.context.loaders).load(wanted), info)

        # Strawberry reads the field's type from the resolver's annotations, in its module.
        resolve.__name__ = resolve.__qualname__ = convert.__name__
        resolve.__module__ = convert.__module__
        resolve.__doc__ = convert.__doc__
        resolve.__annotations__ = {"info": Info, "return": convert.__annotations__["return"]}
        metadata = {**field_options.pop("metadata", {}), LOADED: spec}
        field: R = strawberry.field(resolver=resolve, metadata=metadata, **field_options)
        return field

    return declare


def _fresh(info: Info, value: Any) -> Any:
    """A loaded value, unwrapped when the cache served it stale (and noted in the response)."""
    if isinstance(value, Stale):
        info.context.stale.append({"path": info.path.as_list(), "ageSeconds": round(value.age)})
        return value.value
    return value


class UserInputError(GraphQLError):
    """A request the client can fix: the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT"})


@strawberry.type(description="An amount of money in one currency.")
class Money:
    amount: str = strawberry.field(
        description="The amount as a decimal string, exact to the currency's minor unit."
    )
    currency: str = strawberry.field(description="ISO 4217 currency code, e.g. EUR.")

    @staticmethod
    def from_minor(minor: int, currency: str) -> Money:
        return _money(minor, currency)


# Nothing changes a Money once made, so one per amount serves every request: prices repeat
# across a page and across customers, and making each anew was a noticeable share of a page.
@functools.lru_cache(maxsize=65_536)
def _money(minor: int, currency: str) -> Money:
    return Money(amount=money.to_decimal(minor, currency), currency=currency)


@strawberry.type(description="Where a page of a connection sits in the whole list.")
class PageInfo:
    """Its cursors are encoded (by `encode`, from the page's `positions`) when asked for."""

    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    has_previous_page: bool = strawberry.field(
        description="Whether items precede this page (true whenever `after` was given)."
    )
    positions: strawberry.Private[Sequence[Any]]
    encode: strawberry.Private[Callable[[Any], str]]

    @strawberry.field(description="Cursor of the first item on the page.")
    def start_cursor(self) -> str | None:
        return self.encode(self.positions[0]) if self.positions else None

    @strawberry.field(description="Cursor of the last item: pass it as `after` for the next page.")
    def end_cursor(self) -> str | None:
        return self.encode(self.positions[-1]) if self.positions else None

    @classmethod
    def of(cls, page: Page[Any], key: PageKey) -> PageInfo:
        """The page info of a loaded page."""
        return cls(
            has_next_page=page.has_next,
            has_previous_page=key.after is not None,
            positions=page.positions,
            encode=cursor_of,
        )


def cursor_of(position: Position) -> str:
    """The cursor of an item at this position of a connection. Edges and page infos encode
    theirs only when asked: the agent's timeline page never asks for its twenty."""
    return encode_cursor(position)


def edge_cursor(self: Any) -> str:
    """The `cursor` field of an edge, from the `position` it keeps."""
    return cursor_of(self.position)


def page_size(info: Info, first: int | None) -> int:
    """The page size `first` asks for (the default when null), refused beyond the cap."""
    settings = info.context.settings
    size = settings.page_default if first is None else first
    if not 0 <= size <= settings.page_max:
        raise UserInputError(f"`first` must be between 0 and {settings.page_max}; got {size}.")
    return size


def page_key(
    info: Info,
    owner: int,
    first: int | None,
    after: str | None,
    *,
    filters: tuple[str, ...] = (),
    valid_id: Callable[[str], bool],
) -> PageKey:
    """Validate page arguments against the configured cap and build the loader key.

    `valid_id` checks the id inside a cursor, so a cursor of another connection is refused
    here with a clear message rather than failing in the source.
    """
    size = page_size(info, first)
    position: Position | None = None
    if after is not None:
        try:
            position = decode_cursor(after)
            if not valid_id(position.id):
                raise CursorError(after)
        except CursorError as error:
            raise UserInputError(
                "`after` is not a cursor from this connection; pass an `endCursor` or `cursor` "
                "value unchanged."
            ) from error
    return PageKey(owner=owner, first=size, after=position, filters=filters)


def parse_id(value: strawberry.ID | str) -> int | None:
    """A numeric id from a GraphQL ID, or None when it cannot name any record."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def is_record_id(value: str) -> bool:
    """Whether a cursor's id can name a SQL row: ASCII digits within BIGINT (a longer one
    overflows the driver, and `str.isdigit` also passes digits `int` cannot read, like `²`)."""
    return value.isascii() and value.isdigit() and parse_id(value) is not None


def target_id(value: strawberry.ID) -> int:
    """The id a mutation names, as a number; one that cannot exist is 0, so that it is
    reported like one that does not."""
    number = parse_id(value)
    return number if number is not None else 0


def refused(error_type: Callable[..., E], codes: type[Enum], error: ChangeRejectedError) -> E:
    """A mutation's error result (`XError(code, message, field)`) for a refused change."""
    return error_type(code=codes(error.code), message=str(error), field=error.field)


__all__ = [
    "Info",
    "Money",
    "PageInfo",
    "UserInputError",
    "cursor_of",
    "edge_cursor",
    "is_record_id",
    "load",
    "load_each",
    "load_many",
    "page_key",
    "page_size",
    "parse_id",
    "refused",
    "target_id",
]
