"""An exec whose start fails, as dockerd reports it, through the docker CLI and docker-py.

dockerd (moby's exec route and `ContainerExecStart`): the start request's stream carries the
error text on stdout (a multiplexed stdout frame; raw with a TTY), the exec records an exit
code, and the CLI, which inspects the exec when the stream ends, exits with it: 127 for a
missing command, 126 for one that cannot run and for a failure before the runtime ran (a
user that cannot be found, an image's /etc/passwd that is a FIFO). A detached start
answers with the error. Before this, a failure before the runtime left ExitCode null and
`docker exec` exited 0.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import docker
import pytest

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def running(docker_cli: Runner, busybox: str, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("execfail")
    docker_cli("run", "-d", "--name", name, busybox, "sleep", "300", timeout=30)
    try:
        yield name
    finally:
        docker_cli("rm", "-f", name, check=False, timeout=30)


def _last_exec(docker_py: docker.DockerClient, name: str) -> dict:  # type: ignore[type-arg]
    ids = docker_py.api.inspect_container(name)["ExecIDs"]
    return docker_py.api.exec_inspect(ids[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["nosuchcmd"], 127, "executable file not found"),
        (["/etc"], 126, "OCI runtime exec failed"),
        (["-u", "nosuchuser", "{c}", "true"], 126, "unable to find user nosuchuser"),
    ],
)
def test_failed_start_exits_with_dockers_code(
    docker_cli: Runner, docker_py: docker.DockerClient, running: str, argv: list[str], code: int, words: str
) -> None:
    args = [a.replace("{c}", running) for a in argv] if "{c}" in argv else [running, *argv]
    res = docker_cli("exec", *args, check=False, timeout=30)
    assert res.returncode == code, res
    assert words in res.stdout, res  # dockerd writes it in the stream's stdout
    info = _last_exec(docker_py, running)
    assert info["ExitCode"] == code and info["Running"] is False
    # it has run: a second start is a conflict, as in dockerd
    with pytest.raises(docker.errors.APIError) as err:
        docker_py.api.exec_start(info["ID"])
    assert err.value.status_code == 409


def test_fifo_passwd_exec_exits_126(docker_cli: Runner, docker_py: docker.DockerClient, running: str) -> None:
    docker_cli("exec", running, "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd", timeout=30)
    res = docker_cli("exec", "-u", "nobody", running, "true", check=False, timeout=30)
    assert res.returncode == 126, res
    assert "/etc/passwd is not a regular file" in res.stdout, res
    assert _last_exec(docker_py, running)["ExitCode"] == 126


def test_tty_exec_failure_exits_with_the_code(docker_cli: Runner, running: str) -> None:
    res = docker_cli("exec", "-t", running, "nosuchcmd", check=False, timeout=30)
    assert res.returncode == 127 and "executable file not found" in res.stdout, res


def test_detached_failed_start_is_an_error_with_the_code(docker_py: docker.DockerClient, running: str) -> None:
    api = docker_py.api
    eid = api.exec_create(running, ["nosuchcmd"])["Id"]
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_start(eid, detach=True)
    assert err.value.status_code == 400 and "executable file not found" in str(err.value)
    assert api.exec_inspect(eid)["ExitCode"] == 127
    eid = api.exec_create(running, ["true"], user="nosuchuser")["Id"]
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_start(eid, detach=True)
    assert err.value.status_code == 400 and "unable to find user nosuchuser" in str(err.value)
    assert api.exec_inspect(eid)["ExitCode"] == 126
