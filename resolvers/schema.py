"""The root types and the schema object."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import strawberry
from strawberry.extensions import SchemaExtension

from domain.principal import Scope
from resolvers.access import own_customer
from resolvers.admin import AdminQuery
from resolvers.batch import BatchQuery
from resolvers.common import Info, load, parse_id
from resolvers.customer import Customer, surviving_customer
from resolvers.errors import CodedErrors
from resolvers.federation import FEDERATION_VERSION, Subgraph, price_entities
from resolvers.identity import IdentityQuery
from resolvers.mutations import Mutation
from resolvers.subscriptions import Subscription


def _requested_customer(arguments: dict[str, Any]) -> object:
    return arguments["id"]


@strawberry.type(description="Everything c360 can be asked.")
class Query(BatchQuery, IdentityQuery, AdminQuery):
    @strawberry.field(
        description="A customer by id; null when no customer has that id. The id of a customer "
        "merged into another gives the surviving customer.",
        extensions=[own_customer(Scope.CUSTOMERS, _requested_customer)],
    )
    async def customer(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The customer's id.")],
    ) -> Customer | None:
        number = parse_id(id)
        if number is None:
            return None
        record = await load(info, info.context.loaders.sql.customer_by_id, number)
        return await surviving_customer(info, record)


def create_schema(
    extensions: Sequence[type[SchemaExtension] | Callable[[], SchemaExtension]] = (),
) -> strawberry.Schema:
    """The c360 schema, an Apollo Federation 2 subgraph; `c360 export-schema` prints its client
    SDL as schema.graphql, `--federation` its subgraph SDL (`resolvers.federation`).

    CodedErrors covers what runs through Strawberry's own execution (subscriptions over
    WebSocket); the HTTP endpoint formats with `resolvers.errors.format_error`, by the same rule.
    """
    schema = Subgraph(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[CodedErrors, *extensions],
        federation_version=FEDERATION_VERSION,
    )
    price_entities(schema)
    return schema
