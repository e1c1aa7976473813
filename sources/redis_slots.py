"""What a Redis Cluster asks of c360's keys: one slot per multi-key call.

A cluster refuses a command or a script whose keys live in different slots (CROSSSLOT), and
a script may only touch keys of the slot its declared keys hash to. So what one script call
touches carries one hash tag (`hash_tag`: Redis hashes only the text between the first `{`
and the next `}`), and a batch whose entries live in many slots is split by slot
(`group_by_slot`) into one call per slot, sent in one round trip per node (`run_script`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from sources.optional_redis import RedisClient

T = TypeVar("T")

# One script call: its keys, then its arguments.
ScriptCall = tuple[Sequence[str], Sequence[Any]]


def hash_tag(text: str) -> str:
    """`{text}`: keys holding it share a slot. Braces in `text` are escaped, so no text can
    end the tag early or leave it empty (an empty tag hashes the whole key instead)."""
    return "{" + (text.replace("{", "%7B").replace("}", "%7D") or "-") + "}"


def group_by_slot(
    client: RedisCluster, items: Sequence[T], key: Callable[[T], str]
) -> list[list[T]]:
    """`items` in groups whose `key`s share a slot, in the order each slot first appears."""
    groups: dict[int, list[T]] = {}
    for item in items:
        groups.setdefault(client.keyslot(key(item)), []).append(item)
    return list(groups.values())


async def run_script(
    client: RedisClient, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    """Each call of `script`, with one round trip per node; their results, in order.

    One call goes as it is. Several go in a pipeline: on one Redis, redis-py's (which loads
    the script first); on a cluster, one per node, by name, since redis-py refuses EVALSHA in
    a cluster pipeline because a node may lack the script (a promoted replica does: the
    script cache is not replicated). A node that answers NOSCRIPT is given the script, on
    every master, and the calls are sent once more.
    """
    if len(calls) == 1:
        keys, args = calls[0]
        return [await script(keys=keys, args=args)]
    if not isinstance(client, RedisCluster):
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return await pipe.execute()
    try:
        return await _evalsha_by_node(client, script, calls)
    except NoScriptError:
        await client.script_load(script.script)
        return await _evalsha_by_node(client, script, calls)


async def _evalsha_by_node(
    client: RedisCluster, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    async with client.pipeline() as pipe:
        for keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return await pipe.execute()
