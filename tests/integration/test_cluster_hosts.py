"""The cluster-hosts fixture itself: hosts answer, reach each other over the underlay, run
containers, and leave nothing behind (the teardown asserts it)."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ("tests.cluster_hosts",)  # the cluster_hosts fixture


def test_hosts_reach_each_other_and_run_containers(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_hosts(2)
    assert a.address != b.address
    a.ns_run("busybox", "ping", "-c1", "-W2", b.address)
    b.ns_run("busybox", "ping", "-c1", "-W2", a.address)
    for h in (a, b):
        h.import_busybox()
        out = h.cli("run", "--rm", "busybox", "echo", f"hi-{h.name}").stdout
        assert out.strip() == f"hi-{h.name}"
    # a published port on b answers at b's underlay address, from a's namespace
    b.cli("run", "-d", "--name", "web", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    res = a.ns_run(
        "sh",
        "-c",
        f"for i in 1 2 3 4 5 6 7 8 9 10; do busybox wget -q -O- http://{b.address}:8080/hostname && exit 0; sleep 0.3; done; exit 1",
    )
    assert res.stdout.strip()
    b.cli("rm", "-f", "web")


def test_a_host_daemon_restarts_after_sigkill(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    (a,) = cluster_hosts(1)
    netns = a.netns
    a.kill()
    a.start()
    assert a.cli("version", "--format", "{{.Server.Os}}").stdout.strip() == "linux"
    assert (Path("/var/run/netns") / netns).exists()
