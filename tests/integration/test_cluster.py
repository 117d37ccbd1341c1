"""Swarm mode across three "hosts" (network namespaces, each with its own dockyardd), driven
by the docker CLI and docker-py: init/join/leave, tokens, nodes, services and tasks,
failure of a node, of an etcd member, and of quorum."""

from __future__ import annotations

import json
import shutil
import time
from typing import TYPE_CHECKING, Any

import docker
import pytest

from tests.conftest import wait_for

if TYPE_CHECKING:
    from tests.cluster_hosts import ClusterHost

pytest_plugins = ("tests.cluster_hosts",)  # the cluster_hosts fixture

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed")


def _swarm(hosts: list[ClusterHost], managers: int = 1) -> dict[str, str]:
    """init on hosts[0]; hosts[1:managers] join as managers, the rest as workers."""
    lead = hosts[0]
    lead.cli("swarm", "init", "--advertise-addr", lead.address)
    tokens = {r: lead.cli("swarm", "join-token", "-q", r).stdout.strip() for r in ("worker", "manager")}
    for i, h in enumerate(hosts[1:], start=1):
        role = "manager" if i < managers else "worker"
        h.cli("swarm", "join", "--token", tokens[role], "--advertise-addr", h.address, f"{lead.address}:2377")
    return tokens


def _nodes(h: ClusterHost) -> list[dict[str, Any]]:
    out = h.cli("node", "ls", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_init_join_tokens_and_leave(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_hosts(3)
    assert a.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    res = a.cli("swarm", "leave", check=False)
    assert res.returncode != 0 and "This node is not part of a swarm" in res.stderr
    res = a.cli("service", "ls", check=False)  # moby's errNoManager for a node in no swarm
    assert res.returncode != 0 and 'not a swarm manager. Use "docker swarm init"' in res.stderr, res.stderr
    api = docker.APIClient(base_url=a.host, version="1.47")
    for path in ("/swarm", "/swarm/unlockkey"):  # dockerd's errNoManager (compared live in test_api_conformance)
        r = api._get(api._url(path))
        assert r.status_code == 503 and r.json()["message"].startswith("This node is not a swarm manager."), path
    out = a.cli("swarm", "init", "--advertise-addr", a.address).stdout
    assert "docker swarm join --token SWMTKN-1-" in out and f"{a.address}:2377" in out
    worker = a.cli("swarm", "join-token", "-q", "worker").stdout.strip()
    # a wrong token (right CA, wrong secret) is refused, and the node stays out
    bad = worker[:-25] + "0" * 25
    res = b.cli("swarm", "join", "--token", bad, f"{a.address}:2377", check=False)
    assert res.returncode != 0 and "A valid join token is necessary" in res.stderr, res.stderr
    assert b.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    b.cli("swarm", "join", "--token", worker, "--advertise-addr", b.address, f"{a.address}:2377")
    managers = b.cli("info", "--format", "{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}").stdout.split()
    assert managers == [f"{a.address}:2377"], managers
    assert b.cli(
        "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
    ).stdout.split() == ["active", "false"]
    # rotation revokes the old token
    a.cli("swarm", "join-token", "--rotate", "worker")
    res = c.cli("swarm", "join", "--token", worker, f"{a.address}:2377", check=False)
    assert res.returncode != 0 and "A valid join token is necessary" in res.stderr
    c.cli(
        "swarm",
        "join",
        "--token",
        a.cli("swarm", "join-token", "-q", "worker").stdout.strip(),
        "--advertise-addr",
        c.address,
        f"{a.address}:2377",
    )
    nodes = wait_for(
        lambda: (n := _nodes(a)) and len(n) == 3 and all(x["Status"] == "Ready" for x in n) and n,
        what="3 ready nodes",
    )
    assert {n["Hostname"] for n in nodes} == {"node1", "node2", "node3"}
    assert [n["ManagerStatus"] for n in nodes if n["Hostname"] == "node1"] == ["Leader"]
    # a worker cannot see cluster state; the _ping header says what this node is
    res = b.cli("node", "ls", check=False)
    assert res.returncode != 0 and "This node is not a swarm manager" in res.stderr
    api = docker.APIClient(base_url=b.host, version="1.47")
    assert api._get(api._url("/_ping")).headers["Swarm"] == "active/worker"
    # docker-py: inspect and update a node (labels, availability)
    dc = a.client()
    node = dc.nodes.get("node2")
    assert node.attrs["Spec"]["Role"] == "worker"
    node.update({"Availability": "pause", "Role": "worker", "Labels": {"zone": "b"}})
    node.reload()
    assert node.attrs["Spec"]["Availability"] == "pause" and node.attrs["Spec"]["Labels"] == {"zone": "b"}
    # leave: the node goes down, then can be removed
    b.cli("swarm", "leave")
    assert b.cli("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    wait_for(
        lambda: any(n["Hostname"] == "node2" and n["Status"] == "Down" for n in _nodes(a)), what="node2 down"
    )
    a.cli("node", "rm", "node2")
    assert len(_nodes(a)) == 2
    res = a.cli("swarm", "leave", check=False)
    assert res.returncode != 0 and "--force" in res.stderr


def _tasks(h: ClusterHost, service: str, desired: str = "running") -> list[dict[str, Any]]:
    api = docker.APIClient(base_url=h.host, version="1.47")
    return [t for t in api.tasks(filters={"service": service}) if t["DesiredState"] == desired]


def _running_by_node(h: ClusterHost, service: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in _tasks(h, service):
        if t["Status"]["State"] == "running":
            out[t["NodeID"]] = out.get(t["NodeID"], 0) + 1
    return out


def _local_task_containers(h: ClusterHost, service: str) -> list[str]:
    return h.cli("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").stdout.split()


def test_services_spread_scale_drain_and_node_death(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    hosts = cluster_hosts(3)
    for h in hosts:
        h.import_busybox()
    a, b, c = hosts
    _swarm(hosts)
    ids = {n["Hostname"]: n["ID"] for n in _nodes(a)}
    t0 = time.monotonic()
    a.cli("service", "create", "--detach", "--name", "web", "--replicas", "6", "busybox", "sleep", "1000")
    wait_for(lambda: sum(_running_by_node(a, "web").values()) == 6, timeout=30, what="6 running tasks")
    create_s = time.monotonic() - t0
    spread = _running_by_node(a, "web")
    assert sorted(spread.values()) == [2, 2, 2], spread
    for h in hosts:  # each node runs its own share, as containers of its own daemon
        assert len(_local_task_containers(h, "web")) == 2
    ls = a.cli("service", "ls", "--format", "{{.Name}} {{.Replicas}}").stdout.split()
    assert ls == ["web", "6/6"], ls
    ps = a.cli(
        "service", "ps", "--format", "{{.Name}} {{.Node}} {{.CurrentState}}", "web"
    ).stdout.splitlines()
    assert len(ps) == 6 and all("Running" in line for line in ps), ps

    # scale 6 -> 9 through docker-py
    svc = a.client().services.get("web")
    svc.scale(9)
    wait_for(lambda: sum(_running_by_node(a, "web").values()) == 9, timeout=30, what="9 running tasks")
    assert sorted(_running_by_node(a, "web").values()) == [3, 3, 3]

    # drain node3: its tasks move to the others, its containers go
    a.cli("node", "update", "--availability", "drain", "node3")
    wait_for(
        lambda: (r := _running_by_node(a, "web")) and sum(r.values()) == 9 and ids["node3"] not in r,
        timeout=30,
        what="tasks moved off the drained node",
    )
    wait_for(lambda: not _local_task_containers(c, "web"), timeout=20, what="node3's containers stopped")
    a.cli("node", "update", "--availability", "active", "node3")

    # SIGKILL node2's daemon: node2 is down within seconds, its tasks run elsewhere
    b_tasks = _running_by_node(a, "web").get(ids["node2"], 0)
    assert b_tasks > 0
    t_kill = time.monotonic()
    b.kill()
    wait_for(
        lambda: any(n["Hostname"] == "node2" and n["Status"] == "Down" for n in _nodes(a)),
        timeout=10,
        what="node2 down",
    )
    down_s = time.monotonic() - t_kill
    wait_for(
        lambda: (r := _running_by_node(a, "web")) and sum(r.values()) == 9 and ids["node2"] not in r,
        timeout=20,
        what="node2's tasks rescheduled",
    )
    resched_s = time.monotonic() - t_kill
    # node2 returns: its stale containers are stopped, it gets no task back by itself
    b.start()
    wait_for(
        lambda: not _local_task_containers(b, "web"), timeout=20, what="node2's stale containers stopped"
    )
    wait_for(
        lambda: any(n["Hostname"] == "node2" and n["Status"] == "Ready" for n in _nodes(a)),
        timeout=10,
        what="node2 ready again",
    )
    print(f"\nMEASURE create6={create_s:.2f}s node-down={down_s:.2f}s rescheduled={resched_s:.2f}s")
    assert resched_s < 8, resched_s

    a.cli("service", "rm", "web")
    wait_for(
        lambda: all(not _local_task_containers(h, "web") for h in hosts),
        timeout=20,
        what="service containers removed",
    )


def _svc_inspect(h: ClusterHost, name: str) -> dict[str, Any]:
    return json.loads(h.cli("service", "inspect", name).stdout)[0]


def _wait_update(h: ClusterHost, name: str, want: str, timeout: float = 120) -> None:
    """Wait for a service's UpdateStatus.State; on timeout say where it stood, and its tasks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _svc_inspect(h, name).get("UpdateStatus", {}).get("State") == want:
            return
        time.sleep(0.2)
    tasks = [(t["Slot"], t["DesiredState"], t["Status"]["State"], t["Status"].get("Err"))
             for t in h.client().api.tasks(filters={"service": name})]  # fmt: skip
    raise AssertionError(f"{name} never reached {want}: {_svc_inspect(h, name).get('UpdateStatus')} {tasks}")


def test_rolling_update_and_rollback_on_failure(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    hosts = cluster_hosts(2)
    for h in hosts:
        h.import_busybox()
    a = hosts[0]
    _swarm(hosts)
    a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "app",
        "--replicas",
        "4",
        "--update-parallelism",
        "2",
        "--update-delay",
        "1s",
        "--update-monitor",
        "1s",
        "--rollback-parallelism",
        "0",
        "--rollback-monitor",
        "1s",
        "--env",
        "V=1",
        "busybox",
        "sleep",
        "1000",
    )
    wait_for(lambda: sum(_running_by_node(a, "app").values()) == 4, timeout=30, what="4 running")
    # a good rolling update: all tasks replaced, two at a time
    a.cli("service", "update", "--detach", "--env-add", "V=2", "app")
    _wait_update(a, "app", "completed")
    tasks = _tasks(a, "app")
    assert len(tasks) == 4 and all("V=2" in t["Spec"]["ContainerSpec"]["Env"] for t in tasks)
    assert all(t["Status"]["State"] == "running" for t in tasks)
    # the old tasks are kept as history, shut down
    assert len(_tasks(a, "app", "shutdown")) == 4
    # a failing update with failure action rollback: back to V=2 by itself
    a.cli(
        "service",
        "update",
        "--detach",
        "--update-failure-action",
        "rollback",
        "--env-add",
        "V=3",
        "--args",
        "sh -c 'exit 3'",
        "--restart-condition",
        "none",
        "app",
    )
    _wait_update(a, "app", "rollback_completed")
    svc = _svc_inspect(a, "app")
    assert "V=2" in svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    assert (
        "update rolled back" in svc["UpdateStatus"]["Message"]
        or svc["UpdateStatus"]["State"] == "rollback_completed"
    )
    wait_for(
        lambda: (
            (t := _tasks(a, "app"))
            and len(t) == 4
            and all(x["Status"]["State"] == "running" for x in t)
            and all("V=2" in x["Spec"]["ContainerSpec"]["Env"] for x in t)
        ),
        timeout=30,
        what="4 V=2 tasks",
    )
    failed = [t for t in a.client().api.tasks(filters={"service": "app"}) if t["Status"]["State"] == "failed"]
    assert failed and failed[0]["Status"]["ContainerStatus"]["ExitCode"] == 3
    # a manual rollback (docker service rollback) returns to the previous spec
    a.cli("service", "update", "--detach", "--env-add", "V=4", "app")
    _wait_update(a, "app", "completed")
    a.cli("service", "rollback", "--detach", "app")
    _wait_update(a, "app", "rollback_completed")
    assert "V=2" in _svc_inspect(a, "app")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    # a stale version is refused
    api = a.client().api
    v = _svc_inspect(a, "app")["Version"]["Index"]
    with pytest.raises(docker.errors.APIError) as err:
        api.update_service(
            "app",
            v - 1,
            docker.types.TaskTemplate(docker.types.ContainerSpec("busybox", ["sleep", "5"])),
            name="app",
        )
    assert err.value.status_code == 409 and "out of sequence" in str(err.value)
    a.cli("service", "rm", "app")


def _etcd_pid(h: ClusterHost) -> int:
    return int((h.daemon.exec_root / "swarm" / "etcd.pid").read_text())


def test_three_managers_survive_a_member_and_refuse_writes_without_quorum(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    hosts = cluster_hosts(3)
    for h in hosts:
        h.import_busybox()
    a, b, c = hosts
    _swarm(hosts, managers=3)
    nodes = wait_for(
        lambda: (n := _nodes(a)) and len(n) == 3 and all(x["Status"] == "Ready" for x in n) and n,
        what="3 ready managers",
    )
    assert sorted(n["ManagerStatus"] for n in nodes) == ["Leader", "Reachable", "Reachable"]
    for h in hosts:
        assert h.cli(
            "info", "--format", "{{.Swarm.ControlAvailable}} {{.Swarm.Managers}}"
        ).stdout.split() == ["true", "3"]
    # kill a's etcd member (the first one, the store's first endpoint): the cluster keeps working,
    # also through a itself, whose client fails over to the other members
    os.kill(_etcd_pid(a), signal.SIGKILL)
    a.cli("service", "create", "--detach", "--name", "s1", "--replicas", "3", "busybox", "sleep", "1000")
    wait_for(lambda: sum(_running_by_node(b, "s1").values()) == 3, timeout=30, what="s1 running")
    # the daemon restarts its member
    wait_for(
        lambda: (
            (a.daemon.exec_root / "swarm" / "etcd.pid").exists() and os.path.exists(f"/proc/{_etcd_pid(a)}")
        ),
        timeout=10,
        what="a's member restarted",
    )
    # lose quorum: two members gone (their daemons too, or they would restart them)
    b.kill()
    c.kill()
    for h in (b, c):
        os.kill(_etcd_pid(h), signal.SIGKILL)
    res = a.cli(
        "service", "create", "--detach", "--name", "s2", "busybox", "sleep", "1000", check=False, timeout=60
    )
    assert res.returncode != 0
    assert "cluster store is unavailable" in res.stderr, res.stderr
    # running tasks keep running on a's node
    assert len(_local_task_containers(a, "s1")) >= 1
    b.start()
    c.start()
    wait_for(lambda: a.cli("service", "ls", check=False).returncode == 0, timeout=30, what="quorum back")
    # the scheduler's leader (a) dies: another manager takes over scheduling
    assert a.cli("node", "inspect", "--format", "{{.ManagerStatus.Leader}}", "self").stdout.strip() == "true"
    a.kill()
    b.cli("service", "scale", "--detach", "s1=5")
    wait_for(
        lambda: sum(_running_by_node(b, "s1").values()) == 5, timeout=30, what="s1 scaled by the new leader"
    )
    a.start()
    a.cli("service", "rm", "s1")
    wait_for(lambda: all(not _local_task_containers(h, "s1") for h in hosts), timeout=20, what="s1 gone")


def test_secrets_configs_and_stack_deploy(cluster_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hosts = cluster_hosts(2)
    for h in hosts:
        h.import_busybox()
    a, _b = hosts
    _swarm(hosts)
    a.cli("secret", "create", "db_pass", "-", input="s3cr3t-value\n")
    a.cli("config", "create", "app_conf", "-", input="mode=prod\n")
    assert a.cli("secret", "ls", "--format", "{{.Name}}").stdout.split() == ["db_pass"]
    sec = json.loads(a.cli("secret", "inspect", "db_pass").stdout)[0]
    assert "Data" not in sec["Spec"]  # secret data never comes back out of the API
    res = a.cli("secret", "create", "db_pass", "-", input="again", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr
    # encrypted at rest: the plain value is in no etcd file of any manager
    a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "usesec",
        "--replicas",
        "2",
        "--secret",
        "db_pass",
        "--config",
        "source=app_conf,target=/etc/app.conf",
        "busybox",
        "sleep",
        "1000",
    )
    wait_for(lambda: sum(_running_by_node(a, "usesec").values()) == 2, timeout=30, what="usesec running")
    for h in hosts:
        for cid in _local_task_containers(h, "usesec"):
            assert h.cli("exec", cid, "cat", "/run/secrets/db_pass").stdout == "s3cr3t-value\n"
            assert h.cli("exec", cid, "cat", "/etc/app.conf").stdout == "mode=prod\n"
            res = h.cli("exec", cid, "sh", "-c", "echo x > /run/secrets/db_pass", check=False)
            assert res.returncode != 0  # read-only
    etcd_dir = a.daemon.data_root / "swarm" / "etcd"
    for f in etcd_dir.rglob("*"):
        if f.is_file():
            assert b"s3cr3t-value" not in f.read_bytes(), f
    res = a.cli("secret", "rm", "db_pass", check=False)
    assert res.returncode != 0 and "in use" in res.stderr
    a.cli("service", "rm", "usesec")
    a.cli("secret", "rm", "db_pass")
    a.cli("config", "rm", "app_conf")

    # docker stack deploy: the CLI makes the services (and their labels) over the API
    (tmp_path / "compose.yml").write_text(
        "version: '3.8'\n"
        "services:\n"
        "  web:\n"
        "    image: busybox\n"
        "    command: sleep 1000\n"
        "    deploy:\n"
        "      replicas: 3\n"
        "  worker:\n"
        "    image: busybox\n"
        "    command: sleep 1000\n"
        "    deploy:\n"
        "      mode: global\n"
    )
    a.cli("stack", "deploy", "--detach=true", "-c", str(tmp_path / "compose.yml"), "app")
    assert a.cli("stack", "ls", "--format", "{{.Name}} {{.Services}}").stdout.split() == ["app", "2"]
    wait_for(lambda: sum(_running_by_node(a, "app_web").values()) == 3, timeout=30, what="app_web running")
    wait_for(lambda: len(_running_by_node(a, "app_worker")) == 2, timeout=30, what="app_worker on each node")
    ps = a.cli(
        "stack", "ps", "--filter", "desired-state=running", "--format", "{{.Name}}", "app"
    ).stdout.split()
    assert len(ps) == 5, ps
    # the stack's default network is an overlay: web's tasks resolve worker's by name
    (web1,) = _local_task_containers(a, "app_web")[:1]
    wait_for(
        lambda: a.cli("exec", web1, "nslookup", "tasks.app_worker", check=False).stdout.count("Address") >= 3,
        timeout=10,
        what="tasks.app_worker resolves to both nodes' tasks",
    )
    a.cli("stack", "rm", "app")
    wait_for(lambda: all(not h.cli("ps", "-q").stdout.strip() for h in hosts), timeout=30, what="stack gone")

    # the CLI's default (attached) create follows the tasks until they converge
    res = a.cli(
        "service", "create", "--name", "fg", "--replicas", "2", "busybox", "sleep", "1000", timeout=60
    )
    assert "converged" in res.stdout + res.stderr, res.stdout + res.stderr
    out = a.cli("node", "ps", "--format", "{{.Name}} {{.CurrentState}}", "self").stdout
    assert "fg." in out
    a.cli("service", "rm", "fg")

    # service logs gather the tasks' output from every node (over the nodes' mutual-TLS endpoint)
    a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "talk",
        "--mode",
        "global",
        "busybox",
        "sh",
        "-c",
        "echo hello from $(hostname); sleep 1000",
    )
    wait_for(lambda: len(_running_by_node(a, "talk")) == 2, timeout=30, what="talk on both nodes")
    time.sleep(0.5)
    res = a.cli("service", "logs", "--raw", "talk")
    assert res.stdout.count("hello from") == 2, res.stdout + res.stderr
    res = a.cli("service", "logs", "talk")
    lines = [line for line in res.stdout.splitlines() if "hello from" in line]
    assert {line.split("@")[1].split()[0] for line in lines} == {"node1", "node2"}, res.stdout
    a.cli("service", "rm", "talk")


def test_measure_create_10_and_scale_to_50(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    """The benchmarks of docs/decisions/cluster.md (printed; bounds are generous)."""
    hosts = cluster_hosts(3)
    for h in hosts:
        h.import_busybox()
    a = hosts[0]
    _swarm(hosts)
    t0 = time.monotonic()
    a.cli("service", "create", "--detach", "--name", "bench", "--replicas", "10", "busybox", "sleep", "1000")
    wait_for(lambda: sum(_running_by_node(a, "bench").values()) == 10, timeout=60, what="10 running")
    create10 = time.monotonic() - t0
    t0 = time.monotonic()
    a.cli("service", "scale", "--detach", "bench=50")
    wait_for(lambda: sum(_running_by_node(a, "bench").values()) == 50, timeout=120, what="50 running")
    scale50 = time.monotonic() - t0
    print(f"\nMEASURE create10={create10:.2f}s scale10to50={scale50:.2f}s")
    assert create10 < 30 and scale50 < 90
    a.cli("service", "rm", "bench")
    wait_for(
        lambda: all(not _local_task_containers(h, "bench") for h in hosts), timeout=60, what="bench gone"
    )


def test_promote_and_demote(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_hosts(2)
    _swarm([a, b])
    res = a.cli("node", "demote", "node1", check=False)
    assert res.returncode != 0 and "last manager" in res.stderr
    a.cli("node", "promote", "node2")
    wait_for(
        lambda: b.cli("info", "--format", "{{.Swarm.ControlAvailable}}").stdout.strip() == "true",
        timeout=30,
        what="node2 a manager",
    )
    wait_for(
        lambda: b.cli("node", "ls", check=False).returncode == 0, timeout=30, what="node2 answers node ls"
    )
    assert (b.daemon.exec_root / "swarm" / "etcd.pid").exists()  # it runs an etcd member now
    roles = {n["Hostname"]: n["ManagerStatus"] for n in _nodes(b)}
    assert roles["node1"] == "Leader" and roles["node2"] == "Reachable"
    b.cli("node", "demote", "node2")
    wait_for(
        lambda: b.cli("info", "--format", "{{.Swarm.ControlAvailable}}").stdout.strip() == "false",
        timeout=30,
        what="node2 a worker again",
    )
    wait_for(lambda: not (b.daemon.exec_root / "swarm" / "etcd.pid").exists(), timeout=20, what="member gone")
    a.cli(
        "service", "create", "--detach", "--name", "after", "--replicas", "2", "busybox", "true"
    )  # still writable


def test_network_cut_marks_node_down_and_moves_its_tasks(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_hosts(2)
    for h in (a, b):
        h.import_busybox()
    # this time through docker-py
    ca, cb = a.client(), b.client()
    ca.swarm.init(advertise_addr=a.address, listen_addr=f"{a.address}:2377")
    ca.swarm.reload()
    cb.swarm.join(
        remote_addrs=[f"{a.address}:2377"],
        join_token=ca.swarm.attrs["JoinTokens"]["Worker"],
        advertise_addr=b.address,
    )
    assert cb.info()["Swarm"]["LocalNodeState"] == "active"
    ca.services.create(
        "busybox", ["sleep", "1000"], name="cut", mode=docker.types.ServiceMode("replicated", 4)
    )
    wait_for(lambda: sorted(_running_by_node(a, "cut").values()) == [2, 2], timeout=30, what="2+2 running")
    ids = {n["Hostname"]: n["ID"] for n in _nodes(a)}
    b.ns_run("ip", "link", "set", "eth0", "down")  # node2 loses the network; its daemon lives on
    try:
        wait_for(
            lambda: any(n["Hostname"] == "node2" and n["Status"] == "Down" for n in _nodes(a)),
            timeout=10,
            what="node2 down",
        )
        wait_for(
            lambda: _running_by_node(a, "cut") == {ids["node1"]: 4}, timeout=20, what="tasks moved to node1"
        )
        # cut off, node2 keeps its containers running: it cannot know, and never stops on a guess
        assert len(_local_task_containers(b, "cut")) == 2
    finally:
        b.ns_run("ip", "link", "set", "eth0", "up")
    # back: its stale containers are stopped
    wait_for(
        lambda: not _local_task_containers(b, "cut"), timeout=30, what="node2's stale containers stopped"
    )
    wait_for(
        lambda: any(n["Hostname"] == "node2" and n["Status"] == "Ready" for n in _nodes(a)),
        timeout=10,
        what="node2 ready",
    )
    assert _running_by_node(a, "cut") == {ids["node1"]: 4}
    ca.services.get("cut").remove()


def _http_get(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _overlay_ip(h: ClusterHost, cid: str, net: str) -> str:
    return h.cli(
        "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', cid
    ).stdout.strip()


def test_service_tasks_on_two_nodes_talk_over_an_overlay_by_name(cluster_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_hosts(2)
    for h in (a, b):
        h.import_busybox()
    _swarm([a, b])
    a.cli("network", "create", "-d", "overlay", "appnet")
    a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--mode",
        "global",
        "--network",
        "appnet",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    wait_for(lambda: len(_running_by_node(a, "web")) == 2, timeout=30, what="web on both nodes")
    # the task's network is the overlay, by ID, with the service name as an alias
    t = _tasks(a, "web")[0]
    net_id = json.loads(a.cli("network", "inspect", "appnet").stdout)[0]["Id"]
    assert t["Spec"]["Networks"][0]["Target"] == net_id
    (ca_,), (cb_,) = _local_task_containers(a, "web"), _local_task_containers(b, "web")
    ip_a, ip_b = _overlay_ip(a, ca_, "appnet"), _overlay_ip(b, cb_, "appnet")
    assert ip_a and ip_b and ip_a != ip_b
    # from node1's task: node2's task answers over the overlay, and names resolve to the tasks
    a.cli("exec", ca_, "ping", "-c1", "-W3", ip_b)
    out = wait_for(
        lambda: (
            (r := a.cli("exec", ca_, "nslookup", "tasks.web", check=False)).returncode == 0
            and ip_b in r.stdout
            and r.stdout
        ),
        timeout=10,
        what="tasks.web resolves to node2's task",
    )
    assert ip_a in out
    host_b = b.cli("exec", cb_, "cat", "/etc/hostname").stdout.strip()
    got = wait_for(
        lambda: (
            host_b in a.cli("exec", ca_, "wget", "-q", "-O-", f"http://{ip_b}/hostname", check=False).stdout
        ),
        timeout=10,
        what="http over the overlay",
    )
    assert got
    seen = {
        a.cli("exec", ca_, "wget", "-q", "-O-", "http://web/hostname", check=False).stdout.strip()
        for _ in range(10)
    }
    host_a = a.cli("exec", ca_, "cat", "/etc/hostname").stdout.strip()
    assert seen & {host_a, host_b}, seen
    a.cli("service", "rm", "web")
    wait_for(lambda: all(not _local_task_containers(h, "web") for h in (a, b)), timeout=20, what="web gone")
    wait_for(
        lambda: a.cli("network", "rm", "appnet", check=False).returncode == 0,
        timeout=20,
        what="overlay removable once its endpoints are gone",
    )

    # published ports: mode=host answers on each node's own address; the ingress mesh is refused
    res = a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "mesh",
        "--publish",
        "8081:80",
        "busybox",
        "true",
        check=False,
    )
    assert res.returncode != 0 and "routing mesh" in res.stderr
    a.cli(
        "service",
        "create",
        "--detach",
        "--name",
        "hostport",
        "--mode",
        "global",
        "--publish",
        "mode=host,target=80,published=8081",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    wait_for(lambda: len(_running_by_node(a, "hostport")) == 2, timeout=30, what="hostport on both nodes")
    for h in (a, b):
        (cid,) = _local_task_containers(h, "hostport")
        want = h.cli("exec", cid, "cat", "/etc/hostname").stdout.strip()
        wait_for(
            lambda h=h, want=want: want in _http_get(f"http://{h.address}:8081/hostname"),
            timeout=10,
            what=f"port 8081 on {h.name}",
        )
    a.cli("service", "rm", "hostport")


def test_swarm_on_an_external_etcd_from_daemon_json(cluster_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """daemon.json "swarm-store": the swarm uses that etcd cluster and starts no member."""
    import signal
    import socket
    import subprocess

    gw = cluster_hosts.gateway()
    with socket.socket() as s:
        s.bind((gw, 0))
        client_port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind((gw, 0))
        peer_port = s.getsockname()[1]
    url = f"http://{gw}:{client_port}"
    log = open(tmp_path / "etcd.log", "wb")  # noqa: SIM115  (the etcd process writes it until the end)
    etcd = subprocess.Popen(
        ["etcd", "--name", "ext", "--data-dir", str(tmp_path / "etcd"), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", f"http://{gw}:{peer_port}",
         "--initial-advertise-peer-urls", f"http://{gw}:{peer_port}",
         "--initial-cluster", f"ext=http://{gw}:{peer_port}", "--logger", "zap"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        a, b = cluster_hosts(2, daemon_json={"swarm-store": [url]})
        for h in (a, b):
            h.import_busybox()
        _swarm([a, b])
        assert not (a.daemon.exec_root / "swarm" / "etcd.pid").exists()  # no member of its own
        a.cli("service", "create", "--detach", "--name", "ext", "--replicas", "2", "busybox", "sleep", "1000")
        wait_for(
            lambda: sorted(_running_by_node(a, "ext").values()) == [1, 1], timeout=30, what="ext on both"
        )
        a.cli("service", "rm", "ext")
        wait_for(
            lambda: all(not _local_task_containers(h, "ext") for h in (a, b)), timeout=20, what="ext gone"
        )
        b.cli("swarm", "leave")
        a.cli("swarm", "leave", "--force")
    finally:
        etcd.send_signal(signal.SIGTERM)
        etcd.wait(timeout=20)
        log.close()
