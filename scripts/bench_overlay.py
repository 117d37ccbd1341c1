"""Overlay TCP throughput between containers on two hosts, against two containers on one
bridge: a small static sender and sink (scripts/tcpblast/tcpblast.c, 1 MiB writes), best of N runs
each; busybox nc measures its own 4 KiB copy loop (0.4 Gbit/s here), not the network.

Run from the repository root as root: `PYTHONPATH=$PWD python scripts/bench_overlay.py [MB] [runs]`.
It uses the overlay tests' hosts (namespaces on an underlay bridge, an etcd, a daemon each)
and removes everything it made.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.overlay_hosts import Host, start_cluster

TOOL = Path(__file__).resolve().parent / "tcpblast" / "tcpblast.c"


def _rate(h: Host, client: str, server_ip: str, mb: int) -> float:
    return float(h.docker("exec", client, "/tcpblast", server_ip, "7001", str(mb), timeout=300).stdout)


def _ip(h: Host, name: str, net: str) -> str:
    return h.docker("inspect", "-f", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % net, name).stdout.strip()


def _start(h: Host, name: str, net: str, binary: Path, server: bool) -> None:
    h.docker("run", "-d", "--name", name, "--network", net, "busybox", "sleep", "3600")
    h.docker("cp", str(binary), f"{name}:/tcpblast")
    if server:
        h.docker("exec", "-d", name, "/tcpblast", "-l", "7001")


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    c = start_cluster(2)
    binary = Path("/nonexistent/tcpblast")
    try:
        h1, h2 = c.hosts
        h1.docker("network", "create", "-d", "overlay", "--attachable", "benchov")
        h1.docker("network", "create", "benchbr")
        time.sleep(1)
        binary = Path(tempfile.mkdtemp(prefix="tcpblast-")) / "tcpblast"
        subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(TOOL)], check=True)
        _start(h2, "ovsrv", "benchov", binary, True)
        _start(h1, "ovcli", "benchov", binary, False)
        _start(h1, "brsrv", "benchbr", binary, True)
        _start(h1, "brcli", "benchbr", binary, False)
        ov_ip, br_ip = _ip(h2, "ovsrv", "benchov"), _ip(h1, "brsrv", "benchbr")
        time.sleep(0.5)
        ov, br = [], []
        for _ in range(runs):  # interleaved: both see the same machine load
            br.append(_rate(h1, "brcli", br_ip, mb))
            ov.append(_rate(h1, "ovcli", ov_ip, mb))
        print(f"bridge (one host):   {' '.join(f'{x:.2f}' for x in br)} Gbit/s, best {max(br):.2f}")
        print(f"overlay (two hosts): {' '.join(f'{x:.2f}' for x in ov)} Gbit/s, best {max(ov):.2f}")
        print(f"ratio of bests: {max(ov) / max(br):.3f}")
    finally:
        for h, names in ((h1, ["ovcli", "brsrv", "brcli"]), (h2, ["ovsrv"])):
            h.docker("rm", "-f", *names, check=False)
        h1.docker("network", "rm", "benchov", "benchbr", check=False)
        c.close()
        subprocess.run(["rm", "-rf", str(binary.parent)], check=False)


if __name__ == "__main__":
    main()
