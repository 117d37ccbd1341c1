"""`dockyardd`: parse flags, set up logging, run the daemon until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import sys

from dockyard._sys.malloc import limit_arenas
from dockyard.daemon.config import parse_args
from dockyard.daemon.lifecycle import StartupError, serve
from dockyard.daemon.reload import python_level
from dockyard.errdefs import DockyardError


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    logging.basicConfig(
        level=python_level(cfg.log_level), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    limit_arenas()  # before the worker threads start allocating
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        pass
    except StartupError as err:
        sys.exit(f"dockyardd: {err}")
    except DockyardError as err:  # a setting we cannot honour (daemon.json log-opts, ...)
        raise SystemExit(f"dockyardd: {err}") from None


if __name__ == "__main__":
    main()
