"""Business events: the CloudEvents envelope, the schema registry, the outbox and the bus."""
