"""The root types and the schema object."""

from __future__ import annotations

from typing import Annotated

import strawberry

from resolvers.common import Info, load, parse_id
from resolvers.customer import Customer


@strawberry.type(description="Everything c360 can be asked.")
class Query:
    @strawberry.field(description="A customer by id; null when no customer has that id.")
    async def customer(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The customer's id.")],
    ) -> Customer | None:
        number = parse_id(id)
        if number is None:
            return None
        record = await load(info, info.context.loaders.sql.customer_by_id, number)
        return Customer.from_record(record) if record else None


def create_schema() -> strawberry.Schema:
    """The c360 schema; `c360 export-schema` prints it as schema.graphql."""
    return strawberry.Schema(query=Query)
