"""The benchmark harness: c360 measured over real sockets the way its users load it."""
