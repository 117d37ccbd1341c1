"""The `dockyard` CLI end to end: each test drives the console script against the `daemon` fixture.

Uses only the shared fixtures (daemon, busybox, dockyard_cli, docker_cli, docker_py); every test
creates uniquely named objects and removes them.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import secrets
import select
import signal
import struct
import sys
import tarfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for

DOCKYARD = Path(sys.executable).parent / "dockyard"


def uniq(prefix: str) -> str:
    return f"cli-{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def cleanup(dockyard_cli) -> Iterator[list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """Append ("container", name) or ("image", ref); removed after the test, errors ignored."""
    items: list[tuple[str, str]] = []
    yield items
    for kind, name in reversed(items):
        if kind == "container":
            dockyard_cli("rm", "-f", name, check=False)
        else:
            dockyard_cli("rmi", "-f", name, check=False)


def started(dockyard_cli, busybox, cleanup, *args: str) -> str:  # type: ignore[no-untyped-def]
    name = uniq("ctr")
    cleanup.append(("container", name))
    dockyard_cli("run", "-d", "--name", name, *args, busybox, "sleep", "300")
    return name


# -- run ------------------------------------------------------------------------------------


def test_run_exit_code_propagates(dockyard_cli, busybox):
    res = dockyard_cli("run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert res.returncode == 7
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"


def test_run_env_workdir_user(dockyard_cli, busybox, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROMFILE=yes\n")
    res = dockyard_cli(
        "run",
        "--rm",
        "-e",
        "FOO=bar baz",
        "--env-file",
        str(env_file),
        "-w",
        "/tmp",
        "-u",
        "65534",
        busybox,
        "sh",
        "-c",
        'echo "$FOO|$FROMFILE|$(pwd)|$(id -u)"',
    )
    assert res.stdout.strip() == "bar baz|yes|/tmp|65534"


def test_run_rm_removes_container(dockyard_cli, busybox):
    name = uniq("rm")
    res = dockyard_cli("run", "--rm", "--name", name, busybox, "true")
    assert res.returncode == 0
    names = dockyard_cli("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert name not in names


def test_run_detached_prints_id(dockyard_cli, busybox, cleanup):
    name = uniq("d")
    cleanup.append(("container", name))
    res = dockyard_cli("run", "-d", "--name", name, "-l", "tier=test", busybox, "sleep", "300")
    cid = res.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert dockyard_cli("inspect", "-f", "{{.Id}} {{.State.Running}}", name).stdout.strip() == f"{cid} true"
    assert dockyard_cli("inspect", "-f", '{{index .Config.Labels "tier"}}', name).stdout.strip() == "test"


def test_run_stdin_is_piped(dockyard_cli, busybox):
    res = dockyard_cli("run", "--rm", "-i", busybox, "sh", "-c", "cat; echo done", input="hello\n")
    assert res.stdout == "hello\ndone\n"


def test_run_unknown_image_exits_125(dockyard_cli):
    res = dockyard_cli("run", "--rm", "--pull", "never", "no-such-image-" + secrets.token_hex(3), check=False)
    assert res.returncode == 125
    assert res.stderr.strip()


def test_run_missing_command_exits_127(dockyard_cli, busybox):
    res = dockyard_cli("run", "--rm", busybox, "/no/such/binary", check=False)
    assert res.returncode in (126, 127), res.stderr


def test_create_start_attach(dockyard_cli, busybox, cleanup):
    name = uniq("cr")
    cleanup.append(("container", name))
    cid = dockyard_cli("create", "--name", name, busybox, "sh", "-c", "echo created; exit 3").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert dockyard_cli("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "created"
    res = dockyard_cli("start", "-a", name, check=False)
    assert res.returncode == 3
    assert res.stdout == "created\n"


# -- ps -------------------------------------------------------------------------------------


def test_ps_formats(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    cid = dockyard_cli("inspect", "-f", "{{.Id}}", name).stdout.strip()

    names = dockyard_cli("ps", "--format", "{{.Names}}").stdout.split()
    assert name in names

    assert cid[:12] in dockyard_cli("ps", "-q").stdout.split()
    assert cid in dockyard_cli("ps", "-q", "--no-trunc").stdout.split()

    table = dockyard_cli("ps", "--filter", f"name={name}").stdout.splitlines()
    header = table[0]
    assert re.match(r"CONTAINER ID   IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$", header)
    row = [line for line in table[1:] if line.endswith(name)]
    assert row and row[0].startswith(cid[:12] + "   ")
    assert '"sleep 300"' in row[0] and "Up " in row[0]
    # columns line up under their headers
    assert row[0].index("Up ") == header.index("STATUS")

    custom = dockyard_cli("ps", "--filter", f"name={name}", "--format", "table {{.Names}}\\t{{.State}}")
    lines = custom.stdout.splitlines()
    assert lines[0].split() == ["NAMES", "STATE"]
    assert lines[1].split() == [name, "running"]

    as_json = json.loads(dockyard_cli("ps", "--filter", f"name={name}", "--format", "{{json .}}").stdout)
    assert as_json["Names"] == name and as_json["ID"] == cid[:12]


def test_ps_all_shows_exit_status(dockyard_cli, busybox, cleanup):
    name = uniq("ex")
    cleanup.append(("container", name))
    dockyard_cli("run", "--name", name, busybox, "sh", "-c", "exit 2", check=False)
    status = dockyard_cli("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.strip()
    assert re.fullmatch(r"Exited \(2\) .* ago", status), status
    assert name not in dockyard_cli("ps", "--format", "{{.Names}}").stdout.split()


# -- logs / exec / inspect --------------------------------------------------------------------


def test_logs_tail_and_timestamps(dockyard_cli, busybox, cleanup):
    name = uniq("logs")
    cleanup.append(("container", name))
    dockyard_cli("run", "--name", name, busybox, "sh", "-c", "echo one; echo two; echo three")
    assert dockyard_cli("logs", name).stdout == "one\ntwo\nthree\n"
    assert dockyard_cli("logs", "--tail", "1", name).stdout == "three\n"
    stamped = dockyard_cli("logs", "-t", name).stdout.splitlines()
    assert len(stamped) == 3
    for line, word in zip(stamped, ["one", "two", "three"], strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z " + word, line), line


def test_logs_separates_stderr(dockyard_cli, busybox, cleanup):
    name = uniq("logerr")
    cleanup.append(("container", name))
    dockyard_cli("run", "--name", name, busybox, "sh", "-c", "echo to-err >&2")
    res = dockyard_cli("logs", name)
    assert res.stdout == "" and res.stderr == "to-err\n"


def test_exec(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    res = dockyard_cli(
        "exec", "-e", "X=42", "-w", "/tmp", name, "sh", "-c", 'echo "$X $(pwd)"; exit 4', check=False
    )
    assert res.returncode == 4
    assert res.stdout == "42 /tmp\n"
    res = dockyard_cli("exec", "-i", name, "cat", input="piped\n")
    assert res.stdout == "piped\n"
    assert dockyard_cli("exec", "-u", "65534", name, "id", "-u").stdout.strip() == "65534"
    dockyard_cli("exec", "-d", name, "sh", "-c", "echo bg > /tmp/bg")
    wait_for(lambda: dockyard_cli("exec", name, "cat", "/tmp/bg", check=False).stdout == "bg\n", what="exec -d")


def test_inspect_format(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup, "-e", "K=V")
    out = dockyard_cli("inspect", "-f", "{{.State.Status}} {{.Name}} {{json .Config.Cmd}}", name).stdout
    assert out == f'running /{name} ["sleep","300"]\n'
    env = dockyard_cli("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", name).stdout
    assert "K=V" in env.splitlines()
    full = json.loads(dockyard_cli("inspect", name).stdout)
    assert isinstance(full, list) and full[0]["Name"] == f"/{name}"
    image = json.loads(dockyard_cli("inspect", "--type", "image", busybox).stdout)
    assert image[0]["Id"].startswith("sha256:")


def test_unknown_container_errors(dockyard_cli):
    ghost = uniq("ghost")
    for args in (
        ("rm", ghost),
        ("stop", ghost),
        ("logs", ghost),
        ("exec", ghost, "true"),
        ("inspect", "--type", "container", ghost),
    ):
        res = dockyard_cli(*args, check=False)
        assert res.returncode == 1, args
        assert "No such container" in res.stderr, (args, res.stderr)
    res = dockyard_cli("rm", ghost, check=False)
    assert res.stderr.strip() == f"Error response from daemon: No such container: {ghost}"


def test_unknown_flag_is_usage_error(dockyard_cli):
    res = dockyard_cli("ps", "--no-such-flag", check=False)
    assert res.returncode == 125


# -- lifecycle ------------------------------------------------------------------------------


def test_rename_pause_unpause_wait(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    new = uniq("renamed")
    cleanup.append(("container", new))
    dockyard_cli("rename", name, new)
    assert dockyard_cli("inspect", "-f", "{{.Name}}", new).stdout.strip() == f"/{new}"

    assert dockyard_cli("pause", new).stdout.strip() == new
    assert dockyard_cli("inspect", "-f", "{{.State.Status}}", new).stdout.strip() == "paused"
    assert "(Paused)" in dockyard_cli("ps", "--filter", f"name={new}", "--format", "{{.Status}}").stdout
    dockyard_cli("unpause", new)
    assert dockyard_cli("inspect", "-f", "{{.State.Status}}", new).stdout.strip() == "running"

    dockyard_cli("kill", "-s", "KILL", new)
    assert dockyard_cli("wait", new).stdout.strip() == "137"


def test_wait_returns_exit_code(dockyard_cli, busybox, cleanup):
    name = uniq("wait")
    cleanup.append(("container", name))
    dockyard_cli("run", "-d", "--name", name, busybox, "sh", "-c", "sleep 1; exit 5")
    assert dockyard_cli("wait", name).stdout.strip() == "5"


def test_stop_start_restart_rm(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    assert dockyard_cli("stop", "-t", "1", name).stdout.strip() == name
    assert dockyard_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"
    dockyard_cli("start", name)
    dockyard_cli("restart", "-t", "1", name)
    assert dockyard_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    res = dockyard_cli("rm", name, check=False)
    assert res.returncode == 1 and res.stderr.startswith("Error response from daemon: ")
    assert dockyard_cli("rm", "-f", name).stdout.strip() == name


def test_top_and_stats(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    top = dockyard_cli("top", name).stdout.splitlines()
    assert "PID" in top[0] and any("sleep 300" in line for line in top[1:])
    stats = dockyard_cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name).stdout.split()
    assert stats[0] == name


def test_update(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    dockyard_cli("update", "--restart", "on-failure:2", name)
    out = dockyard_cli(
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        name,
    ).stdout.strip()
    assert out == "on-failure:2"


# -- filesystem -----------------------------------------------------------------------------


def test_cp_both_ways(dockyard_cli, busybox, cleanup, tmp_path):
    name = started(dockyard_cli, busybox, cleanup)
    src = tmp_path / "up.txt"
    src.write_text("from host\n")
    srcdir = tmp_path / "updir"
    (srcdir / "sub").mkdir(parents=True)
    (srcdir / "sub" / "f").write_text("nested\n")

    dockyard_cli("cp", str(src), f"{name}:/tmp/")
    dockyard_cli("cp", str(src), f"{name}:/tmp/renamed.txt")
    dockyard_cli("cp", str(srcdir), f"{name}:/tmp/")
    assert (
        dockyard_cli("exec", name, "cat", "/tmp/up.txt", "/tmp/renamed.txt", "/tmp/updir/sub/f").stdout
        == "from host\nfrom host\nnested\n"
    )

    dockyard_cli("exec", name, "sh", "-c", "mkdir -p /out/d && echo inside > /out/d/g")
    dockyard_cli("cp", f"{name}:/out/d/g", str(tmp_path / "g.txt"))
    assert (tmp_path / "g.txt").read_text() == "inside\n"
    dockyard_cli("cp", f"{name}:/out/d", str(tmp_path))
    assert (tmp_path / "d" / "g").read_text() == "inside\n"
    dockyard_cli("cp", f"{name}:/out/d", str(tmp_path / "newdir"))
    assert (tmp_path / "newdir" / "g").read_text() == "inside\n"

    res = dockyard_cli("cp", f"{name}:/does/not/exist", str(tmp_path), check=False)
    assert res.returncode == 1


def test_diff(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    dockyard_cli("exec", name, "sh", "-c", "echo x > /added && rm /bin/vi")
    lines = dockyard_cli("diff", name).stdout.splitlines()
    assert "A /added" in lines
    assert "D /bin/vi" in lines
    assert "C /bin" in lines


def test_commit(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    ref = f"{uniq('commit')}:v1"
    cleanup.append(("image", ref))
    dockyard_cli("exec", name, "sh", "-c", "echo committed > /marker")
    image_id = dockyard_cli(
        "commit", "-c", "ENV COMMITTED=1", "-m", "a message", "-a", "tester", name, ref
    ).stdout.strip()
    assert image_id.startswith("sha256:")
    out = dockyard_cli("run", "--rm", ref, "sh", "-c", 'cat /marker; echo "$COMMITTED"').stdout
    assert out == "committed\n1\n"
    meta = dockyard_cli("inspect", "-f", "{{.Comment}}|{{.Author}}", ref).stdout.strip()
    assert meta == "a message|tester"


def test_export_and_import(dockyard_cli, busybox, cleanup, tmp_path):
    name = started(dockyard_cli, busybox, cleanup)
    dockyard_cli("exec", name, "sh", "-c", "echo exported > /exported")
    out = tmp_path / "rootfs.tar"
    dockyard_cli("export", "-o", str(out), name)
    with tarfile.open(out) as tf:
        names = {m.name.lstrip("./") for m in tf.getmembers()}
    assert "exported" in names and "bin/busybox" in names

    ref = f"{uniq('import')}:v1"
    cleanup.append(("image", ref))
    res = dockyard_cli("import", "-c", "ENV IMPORTED=yes", "-c", 'CMD ["sh"]', str(out), ref)
    assert res.stdout.strip().startswith("sha256:")
    assert (
        dockyard_cli("run", "--rm", ref, "sh", "-c", 'cat /exported; echo "$IMPORTED"').stdout
        == "exported\nyes\n"
    )


def test_import_minimal_tar(dockyard_cli, busybox, cleanup, tmp_path):
    tar_path = tmp_path / "tiny.tar"
    with tarfile.open(tar_path, "w") as tf:
        data = b"tiny\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    ref = f"{uniq('tiny')}:latest"
    cleanup.append(("image", ref))
    dockyard_cli("import", str(tar_path), ref)
    assert dockyard_cli("images", "-q", ref).stdout.strip()


# -- images ---------------------------------------------------------------------------------


def test_images_tag_rmi(dockyard_cli, busybox, cleanup):
    repo = uniq("tag")
    cleanup.append(("image", f"{repo}:one"))
    dockyard_cli("tag", busybox, f"{repo}:one")
    refs = dockyard_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert f"{repo}:one" in refs
    table = dockyard_cli("images", repo).stdout.splitlines()
    assert re.match(r"REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$", table[0])
    assert table[1].startswith(repo) and re.search(r"\d+(\.\d+)?[kMG]?B$", table[1])
    busybox_id = dockyard_cli("images", "-q", busybox).stdout.strip()
    assert dockyard_cli("images", "-q", f"{repo}:one").stdout.strip() == busybox_id
    assert len(busybox_id) == 12

    res = dockyard_cli("rmi", f"{repo}:one")
    assert res.stdout.strip() == f"Untagged: {repo}:one"
    assert dockyard_cli("images", "-q", f"{repo}:one").stdout.strip() == ""
    res = dockyard_cli("rmi", f"{repo}:one", check=False)
    assert res.returncode == 1 and "No such image" in res.stderr


def test_save_load_round_trip(dockyard_cli, busybox, cleanup, tmp_path):
    ref = f"{uniq('saved')}:v1"
    cleanup.append(("image", ref))
    dockyard_cli("tag", busybox, ref)
    archive = tmp_path / "saved.tar"
    dockyard_cli("save", "-o", str(archive), ref)
    with tarfile.open(archive) as tf:
        assert "manifest.json" in tf.getnames()
    dockyard_cli("rmi", ref)
    res = dockyard_cli("load", "-i", str(archive))
    assert f"Loaded image: {ref}" in res.stdout
    assert dockyard_cli("run", "--rm", ref, "echo", "loaded").stdout == "loaded\n"


def test_history(dockyard_cli, busybox):
    res = dockyard_cli("history", busybox)
    assert re.match(r"IMAGE +CREATED +CREATED BY +SIZE +COMMENT$", res.stdout.splitlines()[0])
    ids = dockyard_cli("history", "-q", busybox).stdout.split()
    assert ids and all(i == "<missing>" or len(i) == 12 for i in ids)


# -- events / system --------------------------------------------------------------------------


def test_events(dockyard_cli, busybox, cleanup):
    name = uniq("ev")
    cleanup.append(("container", name))
    since = str(int(time.time()) - 1)
    dockyard_cli("run", "--name", name, busybox, "true")
    until = str(int(time.time()) + 1)  # a moment ahead: `events` streams until then, then ends
    res = dockyard_cli(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        f"container={name}",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        timeout=30,
    )
    lines = res.stdout.splitlines()
    for action in ("create", "start", "die"):
        assert f"container {action} {name}" in lines, lines
    plain = dockyard_cli(
        "events", "--since", since, "--until", until, "--filter", f"container={name}", "--filter", "event=die"
    ).stdout.splitlines()
    assert len(plain) == 1
    assert re.match(
        r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d) container die [0-9a-f]{64} \(.*exitCode=0", plain[0]
    ), plain


def test_version_and_info(dockyard_cli):
    assert "Server:" in dockyard_cli("version").stdout
    assert dockyard_cli("version", "--format", "{{.Server.ApiVersion}}").stdout.strip()
    assert "Containers:" in dockyard_cli("info").stdout
    assert dockyard_cli("system", "df").stdout.startswith("TYPE")


def test_management_aliases(dockyard_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup)
    assert name in dockyard_cli("container", "ls", "--format", "{{.Names}}").stdout.split()
    assert dockyard_cli("container", "inspect", "-f", "{{.Name}}", name).stdout.strip() == f"/{name}"
    assert dockyard_cli("image", "ls", "-q", busybox).stdout.strip()
    assert dockyard_cli("image", "inspect", "-f", "{{.Id}}", busybox).stdout.startswith("sha256:")


def test_container_prune_with_filter(dockyard_cli, busybox, cleanup):
    label = uniq("prune")
    name = uniq("pr")
    cleanup.append(("container", name))
    dockyard_cli("run", "--name", name, "-l", f"prune={label}", busybox, "true")
    res = dockyard_cli("container", "prune", "-f", "--filter", f"label=prune={label}")
    assert "Total reclaimed space:" in res.stdout
    assert name not in dockyard_cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


# -- terminal -------------------------------------------------------------------------------


def _pty_session(argv: list[str], steps: list[bytes], host_env: dict[str, str]) -> tuple[bytes, int]:
    """Run argv on a fresh pseudo-terminal (30x100), type `steps` one by one, return output and exit code."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(argv[0], argv, {**os.environ, **host_env})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    out = bytearray()

    def read_for(seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                if not data:
                    return
                out.extend(data)

    try:
        read_for(2)
        for step in steps:
            os.write(fd, step)
            read_for(1)
        deadline = time.time() + 20
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                read_for(0.2)
                return bytes(out), os.waitstatus_to_exitcode(status)
            read_for(0.1)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"tty session did not end: {bytes(out)!r}")
    finally:
        os.close(fd)
    raise AssertionError("unreachable")


def test_run_interactive_tty(daemon, busybox):
    out, code = _pty_session(
        [str(DOCKYARD), "-H", daemon.host, "run", "-it", "--rm", busybox, "sh"],
        [b"stty size; echo hi; exit 3\r"],
        {},
    )
    assert code == 3, out
    assert b"hi\r\n" in out
    assert b"30 100" in out, out  # the CLI resized the container's tty to ours


def test_exec_interactive_tty_and_detach(daemon, busybox, dockyard_cli, cleanup):
    name = uniq("tty")
    cleanup.append(("container", name))
    out, code = _pty_session(
        [str(DOCKYARD), "-H", daemon.host, "run", "-it", "--name", name, busybox, "sh"],
        [b"echo attached\r", b"\x10\x11"],
        {},
    )
    assert code == 0 and b"attached" in out
    assert dockyard_cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    out, code = _pty_session(
        [str(DOCKYARD), "-H", daemon.host, "exec", "-it", name, "sh"],
        [b"tty; exit 9\r"],
        {},
    )
    assert code == 9 and b"/dev/pts/" in out, out


# -- same output as the docker CLI ----------------------------------------------------------


def test_output_matches_docker_cli(dockyard_cli, docker_cli, busybox, cleanup):
    name = started(dockyard_cli, busybox, cleanup, "-l", "k=v")
    stable = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Ports}}\t{{.Names}}\t{{.Labels}}\t{{.State}}"
    for args in (
        ("ps", "--filter", f"name={name}", "--format", stable),
        ("ps", "-a", "--no-trunc", "--filter", f"name={name}", "--format", stable),
        ("ps", "-q", "--filter", f"name={name}"),
        ("images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}", busybox),
        ("images", "-q", busybox),
        ("history", "--format", "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}", busybox),
        ("inspect", "-f", "{{.Name}} {{.State.Running}} {{json .Config.Labels}}", name),
        ("top", name),
        ("diff", name),
    ):
        ours = dockyard_cli(*args).stdout
        theirs = docker_cli(*args).stdout
        assert ours == theirs, args


# -- formatting and framing helpers (no daemon needed) ----------------------------------------


def test_template_subset():
    from dockyard.cli.formatting import Template

    obj = {
        "State": {"Status": "running", "Pid": 42},
        "Config": {"Env": ["A=1", "B=2"], "Labels": {"x": "y"}},
        "Name": "/n",
        "Empty": None,
    }
    assert Template("{{.State.Status}}/{{.State.Pid}}").render(obj) == "running/42"
    assert Template("{{json .Config.Env}}").render(obj) == '["A=1","B=2"]'
    assert Template('{{index .Config.Labels "x"}}').render(obj) == "y"
    assert Template("{{range .Config.Env}}[{{.}}]{{end}}").render(obj) == "[A=1][B=2]"
    assert Template("{{if .Empty}}yes{{else}}no{{end}}").render(obj) == "no"
    assert Template('{{.Name | upper}} {{join .Config.Env ","}}').render(obj) == "/N A=1,B=2"
    assert Template("{{.Missing}}").render(obj) == "<no value>"
    assert Template("{{.Config.Labels}}").render(obj) == "map[x:y]"


def test_tabwriter_matches_go():
    from dockyard.cli.formatting import tabwrite

    out = io.StringIO()
    tabwrite(["CONTAINER ID\tIMAGE\tNAMES", "abc\tbusybox:latest-long\tn"], out)
    assert (
        out.getvalue()
        == "CONTAINER ID   IMAGE                 NAMES\nabc            busybox:latest-long   n\n"
    )


def test_human_units():
    from dockyard.cli.formatting import bytes_size, human_duration, human_size

    assert human_duration(0.5) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(59) == "59 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(3 * 3600) == "3 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_size(1_234_567) == "1.23MB"
    assert human_size(999) == "999B"
    assert human_size(1_986_000, 4) == "1.986MB"
    assert bytes_size(656 * 1024) == "656KiB"


def test_frame_decoder_and_detach_scanner():
    from dockyard.cli.streams import DetachScanner, parse_detach_keys
    from dockyard.client import FrameDecoder
    from dockyard.client.framing import encode_frame

    data = encode_frame(1, b"out") + encode_frame(2, b"err") + encode_frame(1, b"x")
    dec = FrameDecoder()
    got = [f for i in range(0, len(data), 3) for f in dec.feed(data[i : i + 3])]
    assert got == [(1, b"out"), (2, b"err"), (1, b"x")]
    assert FrameDecoder(tty=True).feed(b"raw") == [(1, b"raw")]

    keys = parse_detach_keys(None)
    assert keys == b"\x10\x11"
    sc = DetachScanner(keys)
    assert sc.feed(b"ab\x10") == (b"ab", False)
    assert sc.feed(b"c") == (b"\x10c", False)
    assert sc.feed(b"\x10\x11") == (b"", True)


def test_run_flags_build_create_body():
    from click.testing import CliRunner

    from dockyard.cli.runopts import build_config, parse_ports

    assert parse_ports(("127.0.0.1:8080:80/udp", "9000")) == (
        {"80/udp": {}, "9000/tcp": {}},
        {
            "80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
            "9000/tcp": [{"HostIp": "", "HostPort": ""}],
        },
    )
    captured = {}

    import click

    from dockyard.cli.runopts import container_options

    @click.command(context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]})
    @container_options
    def fake(image, command, **opts):
        captured.update(build_config(image, command, opts, detach=True))

    res = CliRunner().invoke(
        fake,
        [
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "--pids-limit",
            "10",
            "--restart",
            "on-failure:3",
            "--ulimit",
            "nofile=100:200",
            "--tmpfs",
            "/run:size=1m",
            "-v",
            "/src:/dst:ro",
            "--cap-add",
            "NET_ADMIN",
            "--init",
            "-h",
            "box",
            "--add-host",
            "a:1.2.3.4",
            "--shm-size",
            "1g",
            "--sysctl",
            "net.x=1",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "3",
            "--read-only",
            "--entrypoint",
            "",
            "img",
            "ls",
            "-l",
        ],
    )
    assert res.exit_code == 0, res.output
    hc = captured["HostConfig"]
    assert hc["Memory"] == 64 << 20 and hc["NanoCpus"] == 1_500_000_000 and hc["PidsLimit"] == 10
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert hc["Tmpfs"] == {"/run": "size=1m"} and hc["Binds"] == ["/src:/dst:ro"]
    assert hc["Init"] is True and hc["ReadonlyRootfs"] is True and hc["ShmSize"] == 1 << 30
    assert hc["ExtraHosts"] == ["a:1.2.3.4"] and hc["Sysctls"] == {"net.x": "1"}
    assert captured["Cmd"] == ["ls", "-l"] and captured["Entrypoint"] == [""]
    assert (
        captured["Hostname"] == "box" and captured["StopSignal"] == "SIGINT" and captured["StopTimeout"] == 3
    )


def test_stream_errors_fail_the_command(dockyard_cli, tmp_path):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(3000))
    res = dockyard_cli("load", "-i", str(garbage), check=False)
    assert res.returncode == 1 and res.stderr.strip()
    res = dockyard_cli("import", str(garbage), f"{uniq('garbage')}:1", check=False)
    assert res.returncode == 1 and res.stderr.strip()


def test_cannot_connect(tmp_path):
    import subprocess

    sock = tmp_path / "nobody-home.sock"
    res = subprocess.run(
        [str(DOCKYARD), "-H", f"unix://{sock}", "ps"], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        == f"Cannot connect to the Docker daemon at unix://{sock}. Is the docker daemon running?"
    )
