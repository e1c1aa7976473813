"""Loaders that record what their batches returned, and loaders that answer from a recording.

Running one operation twice on the same data, with no second round trip to any store, is what
both the bench's engine floor (the same documents again and again from memory) and the
differential check (the same request through the engine and through graphql-core) need.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from resolvers.context import Loaders
from sources.dataloader import MISSING, DataLoader, loader_property

GROUPS = ("sql", "mongo", "vendor")
# What each loader's batches returned, by (group, loader name) and key.
Recording = dict[tuple[str, str], dict[Hashable, Any]]


@dataclass(frozen=True, slots=True)
class _BatchFailed:
    """A batch that raised: every key of it raises the same error on replay."""

    error: BaseException


def _loader_names(group: object) -> list[str]:
    return [n for n, v in vars(type(group)).items() if isinstance(v, loader_property)]


def recording_loaders(loaders: Loaders, recording: Recording) -> Loaders:
    """`loaders`, with every batch's results (or its error), and every value a batch found at
    hand (`peek`), also written into `recording`."""
    for group_name in GROUPS:
        group = getattr(loaders, group_name)
        for name in _loader_names(group):
            loader: DataLoader[Any, Any] = getattr(group, name)
            store = recording.setdefault((group_name, name), {})
            real = loader.batch

            async def recorded(keys: Sequence[Any], real: Any = real, store: Any = store) -> Any:
                try:
                    values = await real(keys)
                except Exception as error:
                    store.update(dict.fromkeys(keys, _BatchFailed(error)))
                    raise
                store.update(zip(keys, values, strict=True))
                return values

            loader.batch = recorded
            if loader.peek is not None:
                peek = loader.peek

                def peek_recorded(keys: Sequence[Any], peek: Any = peek, store: Any = store) -> Any:
                    values = peek(keys)
                    store.update(
                        (k, v) for k, v in zip(keys, values, strict=True) if v is not MISSING
                    )
                    return values

                loader.peek = peek_recorded
    return loaders


class Replay:
    """Loaders that answer every batch from `recording`, made afresh for each operation as a
    request's are: each loader on its first use. What does not change between operations (the
    groups' classes, each loader's peek and batch functions) is made once, here, so that an
    operation pays for the loaders it uses, as a request does, and the bench's engine floor
    measures the engine rather than this harness.

    A key the recording does not hold raises KeyError: the replayed operation asked for
    something the recorded one did not.
    """

    def __init__(self, template: Loaders, recording: Recording) -> None:
        self._groups: dict[str, tuple[type, dict[str, Any]]] = {}
        for group_name in GROUPS:
            group = getattr(template, group_name)
            names = _loader_names(group)
            made = {
                name: loader_property(_replaying(recording.get((group_name, name), {})))
                for name in names
            }
            kind = type(f"Replaying{type(group).__name__}", (type(group),), made)
            # The group's own state (its connections), without any loader the template made.
            state = {k: v for k, v in vars(group).items() if k not in names}
            self._groups[group_name] = (kind, state)

    def loaders(self) -> Loaders:
        """Fresh loaders, as for a new request."""
        groups = {}
        for group_name, (kind, state) in self._groups.items():
            group: Any = object.__new__(kind)
            group.__dict__.update(state)
            groups[group_name] = group
        return Loaders(**groups)


def _replaying(store: dict[Hashable, Any]) -> Any:
    """How a replaying loader is made: its peek reads `store` (as it is when asked: the
    differential check replays while nothing records any more, the floor likewise)."""
    get = store.get

    def peek(keys: Sequence[Any]) -> list[Any]:
        values = [get(key, MISSING) for key in keys]
        return [v.error if type(v) is _BatchFailed else v for v in values]

    async def batch(keys: Sequence[Any]) -> list[Any]:
        raise KeyError(f"the recording holds none of {list(keys)!r}")

    def make(group: object) -> DataLoader[Any, Any]:
        return DataLoader(batch, peek=peek)

    return make
