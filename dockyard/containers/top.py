"""`docker top`: the host's `ps` output narrowed to a container's processes.

Emulates moby's daemon/top_unix.go: run `ps <ps_args> -q<pids>` (and plain `ps <ps_args>`
when the options do not combine with -q), then keep the lines whose PID column is one of
the container's pids, plus the thread lines ("-" in the PID column) that follow one of
them. Parsing is pure (`parse_ps_output`); `top` is the one place that runs `ps`.
"""

from __future__ import annotations

import re
from typing import Any

from dockyard import errdefs
from dockyard._sys import proc

__all__ = ["parse_ps_output", "top", "validate_ps_args"]

_PS_TIMEOUT = 30.0
# moby refuses `-o xxx=PID`, which would rename the PID column it needs to filter on
_RENAMED_PID = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")


def validate_ps_args(ps_args: str) -> None:
    for key, value in _RENAMED_PID.findall(ps_args):
        if key != "pid":
            raise errdefs.InvalidArgument(f'specifying "{key}={value}" is not allowed')


def parse_ps_output(output: str, pids: list[int]) -> dict[str, Any]:
    lines = output.split("\n")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise errdefs.Internal("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    processes: list[list[str]] = []
    in_container = False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= pid_index:
            continue
        if fields[pid_index] == "-":  # a thread line (ps -m / -L) belongs to the process above
            if in_container:
                processes.append(_fit(fields, len(titles)))
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise errdefs.Internal(f"Unexpected pid '{fields[pid_index]}'") from None
        in_container = pid in wanted
        if in_container:
            processes.append(_fit(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _fit(fields: list[str], n: int) -> list[str]:
    """The last column (CMD) may contain spaces: merge the overhang into it."""
    return [*fields[: n - 1], " ".join(fields[n - 1 :])]


async def top(pids: list[int], ps_args: str = "") -> dict[str, Any]:
    ps_args = ps_args or "-ef"
    validate_ps_args(ps_args)
    args = ps_args.split()
    only = "-q" + ",".join(str(p) for p in pids)
    res = await proc.run(["ps", *args, only], timeout=_PS_TIMEOUT, check=False)
    if res.returncode != 0:
        # some options (such as f) cannot be combined with -q
        res = await proc.run(["ps", *args], timeout=_PS_TIMEOUT, check=False)
        if res.returncode != 0:
            first = res.stderr.decode(errors="replace").split("\n", 1)[0]
            raise errdefs.Internal(f"ps: {first or f'exit status {res.returncode}'}")
    return parse_ps_output(res.stdout.decode(errors="replace"), pids)
