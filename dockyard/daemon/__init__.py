"""The daemon: configuration, wiring, startup and shutdown. No logic of its own."""
