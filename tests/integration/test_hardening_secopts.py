"""Security options through real clients: the default seccomp profile, `--security-opt`
(seccomp, no-new-privileges, systempaths, apparmor, label), the daemon-wide
`--no-new-privileges`, and tmpfs mount defaults.

The syscall probes run as the attacker would: a program inside the container calling
clone/clone3/io_uring_setup directly (tests/fixtures/sysprobe.c, compiled statically here;
`unshare(2)` alone is not a test of the profile). Each test removes what it made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO, Daemon, Runner, destroy_daemon, import_busybox, make_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs, runc)")

PROBES = ("clone-plain", "clone-newuser", "clone-newnet", "clone3", "io_uring")
EPERM, EACCES, ENOSYS = 1, 13, 38


def _build_probe_image(host: str, tag: str) -> None:
    if not shutil.which("gcc"):
        pytest.skip("gcc is missing (make apt installs gcc and libc6-dev)")
    with tempfile.TemporaryDirectory(prefix="dy-sysprobe-") as ctx:
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", f"{ctx}/sysprobe", str(REPO / "tests/fixtures/sysprobe.c")],
            check=True, capture_output=True,
        )  # fmt: skip
        Path(ctx, "Dockerfile").write_text("FROM busybox:latest\nCOPY sysprobe /bin/sysprobe\n")
        env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
        subprocess.run(["docker", "build", "-q", "-t", tag, ctx], check=True, capture_output=True, env=env)


@pytest.fixture(scope="session")
def probe_image(daemon: Daemon, busybox: str) -> Iterator[str]:
    """busybox plus a static /bin/sysprobe, built once per session."""
    tag = "dy-sysprobe:test"
    _build_probe_image(daemon.host, tag)
    yield tag
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, env=env, check=False)


def _probe(docker_cli: Runner, image: str, *run_opts: str, probes: tuple[str, ...] = PROBES) -> dict[str, str]:
    script = "; ".join(f'echo "{p} $(sysprobe {p})"' for p in probes)
    out = docker_cli("run", "--rm", *run_opts, image, "sh", "-c", script).stdout
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


def _no_containers_left(client: docker.APIClient) -> None:
    assert client.containers(all=True, filters={"label": "dy-secopts"}) == []


# ---- the default profile --------------------------------------------------------------


def test_default_profile_denies_namespaces_clone3_and_io_uring(docker_cli: Runner, probe_image: str) -> None:
    got = _probe(docker_cli, probe_image)
    assert got == {
        "clone-plain": "ok",  # fork-like clone stays allowed
        "clone-newuser": f"errno={EPERM}",  # namespace flags need CAP_SYS_ADMIN
        "clone-newnet": f"errno={EPERM}",
        "clone3": f"errno={ENOSYS}",  # so glibc falls back to clone, where flags are visible
        "io_uring": f"errno={EPERM}",
    }


def test_cap_sys_admin_allows_namespace_clone(docker_cli: Runner, probe_image: str) -> None:
    got = _probe(docker_cli, probe_image, "--cap-add", "SYS_ADMIN")
    assert got["clone-newnet"] == "ok"
    assert got["clone3"] == "ok"
    assert got["io_uring"] == f"errno={EPERM}"  # not tied to any capability


def test_seccomp_unconfined_lifts_the_filter(docker_cli: Runner, probe_image: str) -> None:
    got = _probe(docker_cli, probe_image, "--security-opt", "seccomp=unconfined")
    assert got["clone-newuser"] == "ok"  # user namespaces need no capability
    assert got["clone3"] == "ok"
    assert got["io_uring"] == "ok"
    assert got["clone-newnet"] == f"errno={EPERM}"  # the kernel's own check: no CAP_SYS_ADMIN


def test_privileged_runs_without_seccomp(docker_cli: Runner, busybox: str) -> None:
    def mode(*opts: str) -> str:
        out = docker_cli("run", "--rm", *opts, busybox, "grep", "^Seccomp:", "/proc/self/status").stdout
        return out.split()[1]

    assert mode() == "2"  # filter mode
    assert mode("--privileged") == "0"


# ---- custom profiles ------------------------------------------------------------------

DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}],
}


def test_profile_file_through_the_cli(docker_cli: Runner, probe_image: str, tmp_path: Path) -> None:
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps(DENY_MKDIR, indent=2))
    name = "dy-secopts-profile"
    try:
        docker_cli("create", "--name", name, "--label", "dy-secopts", "--security-opt", f"seccomp={profile}",
                   probe_image, "sysprobe", "mkdir", "/tmp/made")  # fmt: skip
        out = docker_cli("start", "-a", name).stdout
        assert out.strip() == f"errno={EACCES}"
        # inspect shows the option as the CLI sent it: the file's content, compacted
        opts = json.loads(docker_cli("inspect", "-f", "{{json .HostConfig.SecurityOpt}}", name).stdout)
        assert len(opts) == 1 and opts[0].startswith("seccomp=")
        assert json.loads(opts[0].split("=", 1)[1]) == DENY_MKDIR
    finally:
        docker_cli("rm", "-f", name, check=False)


def test_profile_through_docker_py(docker_py: docker.DockerClient, probe_image: str) -> None:
    out = docker_py.containers.run(
        probe_image, ["sysprobe", "mkdir", "/tmp/made"], remove=True,
        security_opt=["seccomp=" + json.dumps(DENY_MKDIR)], labels=["dy-secopts"],
    )  # fmt: skip
    assert out.decode().strip() == f"errno={EACCES}"


def test_profile_file_through_the_dockyard_cli(dockyard_cli: Runner, probe_image: str, tmp_path: Path) -> None:
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps(DENY_MKDIR, indent=2))
    out = dockyard_cli("run", "--rm", "--security-opt", f"seccomp={profile}", probe_image, "sysprobe", "mkdir", "/m")
    assert out.stdout.strip() == f"errno={EACCES}"


@pytest.mark.parametrize(
    "opt, words",
    [
        ("foo=bar", 'invalid --security-opt: "foo=bar"'),
        ("seccomp", 'invalid --security-opt: "seccomp"'),
        ("no-new-privileges=maybe", "invalid --security-opt"),
        ("seccomp={not json", "decoding seccomp profile failed"),
        ('seccomp={"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction"),
        ('seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]}', "index must be 0 to 5"),
        ('seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}', "not supported"),
        ("seccomp=/etc/profile.json", "seccomp expects"),
        ("apparmor=docker-default", "AppArmor"),
        ("label=type:container_t", "SELinux"),
        ("systempaths=confined", "invalid --security-opt"),
    ],
)  # fmt: skip
def test_bad_security_options_are_400(docker_py: docker.DockerClient, busybox: str, opt: str, words: str) -> None:
    client = docker_py.api
    with pytest.raises(docker.errors.APIError) as err:
        client.create_container(busybox, ["true"], labels=["dy-secopts"],
                                host_config=client.create_host_config(security_opt=[opt]))  # fmt: skip
    assert err.value.status_code == 400
    assert words in str(err.value.explanation)
    _no_containers_left(client)


def test_bad_option_through_the_cli(docker_cli: Runner, busybox: str) -> None:
    res = docker_cli("run", "--rm", "--security-opt", "seccomp=bogus:thing", busybox, "true", check=False)
    assert res.returncode != 0
    assert "seccomp profile" in res.stderr  # the CLI reads the "file" first and says so
    res = docker_cli("run", "--rm", "--security-opt", "nonsense=1", busybox, "true", check=False)
    assert res.returncode != 0 and 'invalid --security-opt: "nonsense=1"' in res.stderr


def test_harmless_lsm_opt_outs_are_accepted(docker_cli: Runner, busybox: str) -> None:
    # no AppArmor or SELinux here: asking for no confinement is what the host gives already
    out = docker_cli("run", "--rm", "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
                     busybox, "echo", "fine").stdout  # fmt: skip
    assert out.strip() == "fine"


# ---- no-new-privileges ------------------------------------------------------------------


def _nnp(run: Runner, image: str, *opts: str) -> str:
    out = run("run", "--rm", *opts, image, "grep", "^NoNewPrivs:", "/proc/self/status").stdout
    return out.split()[1]


def test_no_new_privileges_forms(docker_cli: Runner, busybox: str) -> None:
    assert _nnp(docker_cli, busybox) == "0"
    assert _nnp(docker_cli, busybox, "--security-opt", "no-new-privileges") == "1"
    assert _nnp(docker_cli, busybox, "--security-opt", "no-new-privileges=true") == "1"
    assert _nnp(docker_cli, busybox, "--security-opt", "no-new-privileges:true") == "1"
    assert _nnp(docker_cli, busybox, "--security-opt", "no-new-privileges=false") == "0"


def test_no_new_privileges_reaches_exec(docker_cli: Runner, busybox: str) -> None:
    name = "dy-secopts-nnp-exec"
    try:
        docker_cli("run", "-d", "--name", name, "--security-opt", "no-new-privileges", busybox, "sleep", "60")
        out = docker_cli("exec", name, "grep", "^NoNewPrivs:", "/proc/self/status").stdout
        assert out.split()[1] == "1"
    finally:
        docker_cli("rm", "-f", name, check=False)


def test_daemon_wide_no_new_privileges() -> None:
    d = make_daemon(("--no-new-privileges",))
    try:
        import_busybox(d.host)
        env = {**os.environ, "DOCKER_HOST": d.host}

        def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=check, timeout=60)

        assert _nnp(run, "busybox") == "1"
        assert _nnp(run, "busybox", "--security-opt", "no-new-privileges=false") == "0"
        info = docker.APIClient(base_url=d.host, version="1.47").info()
        assert "name=no-new-privileges" in info["SecurityOptions"]
    finally:
        destroy_daemon(d)


# ---- system paths and tmpfs -----------------------------------------------------------


def _mounts(run: Runner, image: str, *opts: str) -> dict[str, list[str]]:
    out = run("run", "--rm", *opts, image, "cat", "/proc/mounts").stdout
    return {f[1]: f[3].split(",") for f in (line.split() for line in out.splitlines())}


def test_systempaths_unconfined(docker_cli: Runner, busybox: str) -> None:
    default = _mounts(docker_cli, busybox)
    assert "/proc/keys" in default and "ro" in default["/proc/sys"]  # masked; read-only
    open_ = _mounts(docker_cli, busybox, "--security-opt", "systempaths=unconfined")
    assert "/proc/keys" not in open_ and "/proc/sys" not in open_


def test_tmpfs_keeps_safe_defaults_with_options(docker_cli: Runner, busybox: str) -> None:
    m = _mounts(
        docker_cli, busybox, "--tmpfs", "/t:size=1m", "--tmpfs", "/x:exec,size=2m",
        "--mount", "type=tmpfs,destination=/m,tmpfs-size=1048576",
    )  # fmt: skip
    for dest in ("/t", "/m"):
        assert {"nosuid", "nodev", "noexec"} <= set(m[dest]), (dest, m[dest])
    assert "size=1024k" in m["/t"]
    assert "noexec" not in m["/x"] and {"nosuid", "nodev"} <= set(m["/x"])


def test_mount_tmpfs_options_honoured_or_refused(docker_py: docker.DockerClient, busybox: str) -> None:
    client = docker_py.api

    def mount(options: list[list[str]]) -> dict[str, object]:
        return {"Type": "tmpfs", "Target": "/m", "TmpfsOptions": {"SizeBytes": 1 << 20, "Options": options}}

    cid = client.create_container(
        busybox, ["cat", "/proc/mounts"], labels=["dy-secopts"],
        host_config=client.create_host_config(mounts=[mount([["exec"]])]),
    )["Id"]  # fmt: skip
    try:
        client.start(cid)
        client.wait(cid, timeout=30)
        line = next(x for x in client.logs(cid).decode().splitlines() if x.split()[1] == "/m")
        opts = set(line.split()[3].split(","))
        assert "noexec" not in opts and {"nosuid", "nodev"} <= opts
    finally:
        client.remove_container(cid, force=True)
    with pytest.raises(docker.errors.APIError) as err:
        client.create_container(busybox, ["true"], labels=["dy-secopts"],
                                host_config=client.create_host_config(mounts=[mount([["suid"]])]))  # fmt: skip
    assert err.value.status_code == 400 and "unsupported tmpfs option" in str(err.value.explanation)
    _no_containers_left(client)
