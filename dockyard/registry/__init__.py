"""Registries: the distribution protocol's shared spec, the daemon's client and our own server."""

__all__: list[str] = []
