"""The entity cache between the loaders and the sources (Redis, or in-process)."""
