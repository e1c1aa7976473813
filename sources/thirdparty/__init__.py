"""Third-party HTTP APIs (loyalty, carrier tracking) and the simulator that stands in for them."""
