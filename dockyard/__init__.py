"""Dockyard: a Docker-compatible container engine."""

__all__ = ["__version__"]
__version__ = "0.1.0"
