"""The SQL system of record: customers, addresses, products, orders and the outbox."""
