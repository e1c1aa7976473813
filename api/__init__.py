"""HTTP and WebSocket wiring, settings, health and the command line of c360."""
