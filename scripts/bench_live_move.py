"""Benchmark of `dockyard container move --live` (docs/benchmarks.md): for containers
holding 16, 256 and 1,024 MiB, the frozen time (from the checkpoint request to the
container seen running on the target) and the total time the CLI reports, on the test
hosts of tests/integration/live_hosts.py (two daemons in two namespaces on this machine).

Run as root from the repository: python scripts/bench_live_move.py [MiB ...]
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.live_hosts import dockyard_move, start_live_hosts  # noqa: E402


def main(sizes: list[int]) -> None:
    lh = start_live_hosts()
    try:
        a, b = lh.hosts
        for mib in sizes:
            name = f"bench{mib}"
            # an awk string of `mib` MiB of spaces (non-zero bytes): resident, private memory
            prog = f'BEGIN{{s=sprintf("%{mib * 1048576}s",""); print "ready"; fflush(); system("sleep 100000")}}'
            a.docker("run", "-d", "--name", name, "--network", lh.network, "busybox", "awk", prog)
            deadline = time.monotonic() + 120
            while "ready" not in a.docker("logs", name).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not fill its memory")
                time.sleep(0.2)
            stats = json.loads(a.docker("stats", "--no-stream", "--format", "{{json .}}", name).stdout)
            res = dockyard_move(a, b, "--live", name, timeout=900)
            if res.returncode != 0:
                raise RuntimeError(res.stdout + res.stderr)
            frozen = re.search(r"frozen (\d+) ms, total ([\d.]+)s", res.stdout)
            dump = re.search(r"checkpoint \S+ taken in ([\d.]+)s", res.stdout)
            sent = re.search(r"sent checkpoint \(processes and memory\): (\S+) in ([\d.]+)s \((\S+)\)", res.stdout)
            assert frozen and dump and sent, res.stdout
            print(f"{mib} MiB (mem {stats['MemUsage']}): frozen {frozen[1]} ms, total {frozen[2]} s, "
                  f"dump {dump[1]} s, checkpoint {sent[1]} sent in {sent[2]} s ({sent[3]})", flush=True)  # fmt: skip
            b.docker("rm", "-f", name)
    finally:
        lh.close()


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [16, 256, 1024])
