"""c360's query engine: operations compiled once into plans, run without graphql-core's
per-field interpretation.

graphql-core interprets every field of every request the same generic way: it looks the field
up, builds a resolve info, wraps the resolver in Strawberry's extension chain and completes the
value by inspecting its type, and it gives every asynchronous field a task of its own. Most of
c360's fields only read an attribute or a value of their object's record. `plan` works out once
per document and operation what each selected field is (an attribute read, a resolver call, a
sync method of its object alone called inline as an attribute is read, its rules, how its value
is completed); `run` executes a plan with plain calls, and runs each resolver coroutine itself,
resuming it from the future it waits on instead of wrapping it in a task; `optimistic` runs a
plan in the cheapest order first and in graphql-core's (`run`'s) only when an error or a stale
value would show the difference. A union's value is completed by the plan of the object type
its `resolve_type` names, and an awaitable item of a list (as Strawberry's own `_entities`
gives) is run like an async resolver.

What a plan does not cover (introspection, interfaces, directives, mutations, subscriptions,
federation's `_service`) runs through graphql-core unchanged:
`api.execution.Executor` chooses. `C360_ENGINE=differential`, which the whole test suite runs
under (tests/conftest.py), holds the two paths to the same bytes; tests/api/test_engine.py adds
the bench's documents for every role and a schema built to break completion.
"""
