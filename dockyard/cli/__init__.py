"""The `dockyard` command-line client (docker-compatible commands over `dockyard.client`)."""

__all__: list[str] = []
