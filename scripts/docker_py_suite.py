#!/usr/bin/env python3
"""Runs docker-py's own integration tests against a dockyardd and Debian's dockerd, and
prints the tests that pass on dockerd but fail on dockyardd (issue 12's acceptance check).

Not part of our CI: it needs docker-py's test tree, paramiko and a real dockerd. Run it
from a worktree root with the project venv:

    PYTHONPATH=$PWD /work/main/.venv/bin/python scripts/docker_py_suite.py [--only dockyard]

What it does:
- keeps docker-py's `tests/` at the tag of the installed docker-py in a cache directory
  (--cache, default /var/tmp/dockyard-docker-py-suite), taken with `git archive` from a
  local clone (--source, e.g. a mirror) or cloned from GitHub;
- installs paramiko (docker-py's tests/helpers.py imports it) and websocket-client (the
  attach websocket test) into that cache with pip;
- starts a dockyardd of its own (tests/conftest.py's make_daemon: own data root, socket and
  bridge) and Debian's dockerd on its own roots and socket with `--bridge none
  --iptables=false`, holding /tmp/dockyard-real-dockerd.lock as the real_docker fixture does;
- makes the images the tests use, all from the busybox rootfs of scripts/busybox-rootfs.sh
  (no registry is reachable here):
    busybox:latest -> that rootfs, CMD ["sh"] (what `make run` imports);
    alpine:3.10 (docker-py's TEST_IMG), alpine:latest -> that rootfs plus alpine's postgres
      user (uid 70) and /var/opt, which exec tests use; CMD ["/bin/sh"] as alpine's.
  Tests that need Docker Hub fail on both engines, so they do not show up as differences;
- runs the suite without the swarm/service/node/secret/config/plugin modules (features of
  other issues; both engines run outside a swarm) and compares the junit reports.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import destroy_daemon, import_busybox, make_daemon  # noqa: E402 - after the path fix

STAND_INS = ["alpine:3.10", "alpine:latest", "busybox:latest"]
SKIPPED_MODULES = [
    "api_swarm_test.py", "models_swarm_test.py", "api_service_test.py", "models_services_test.py",
    "models_nodes_test.py", "api_secret_test.py", "api_config_test.py", "api_plugin_test.py",
]  # fmt: skip
DOCKERD = "/usr/sbin/dockerd"
LOCK = "/tmp/dockyard-real-dockerd.lock"


def prepare_tests(cache: Path, source: str | None) -> Path:
    """docker-py's tests/ at the installed version's tag, kept under cache/<version>."""
    version = importlib.metadata.version("docker")
    dest = cache / version
    if (dest / "tests" / "integration" / "conftest.py").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if source is None:
        clone = cache / f"clone-{version}"
        if not clone.exists():
            subprocess.run(
                ["git", "clone", "--quiet", "--bare", "--depth", "1", "--branch", version,
                 "https://github.com/docker/docker-py", str(clone)], check=True,
            )  # fmt: skip
        source = str(clone)
    tar = subprocess.run(
        ["git", "--git-dir", _git_dir(Path(source)), "archive", version, "tests"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest


def _git_dir(p: Path) -> str:
    return str(p / ".git") if (p / ".git").exists() else str(p)


def prepare_deps(cache: Path) -> Path:
    deps = cache / "deps"
    if not (deps / "websocket").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(deps), "paramiko", "websocket-client"], check=True)
    return deps


def _alpine_rootfs() -> bytes:
    """The busybox rootfs with what docker-py's tests use of alpine besides busybox: its
    postgres user (uid 70, exec `user=`) and /var/opt (exec `workdir=`)."""
    base = subprocess.run([str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout
    extra = {"./etc/passwd": b"postgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh\n", "./etc/group": b"postgres:x:70:\n"}
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if data is not None and m.name in extra:
                data += extra[m.name]
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
        opt = tarfile.TarInfo("./var/opt")
        opt.type, opt.mode = tarfile.DIRTYPE, 0o755
        dst.addfile(opt)
    return out.getvalue()


def make_images(host: str) -> None:
    env = {**os.environ, "DOCKER_HOST": host}
    import_busybox(host, "busybox:latest")
    subprocess.run(
        ["docker", "import", "-c", 'CMD ["/bin/sh"]', "-", STAND_INS[0]], input=_alpine_rootfs(), env=env,
        capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(["docker", "tag", STAND_INS[0], STAND_INS[1]], check=True, env=env)


class RealDockerd:
    """Debian's dockerd on roots of its own, under the shared one-dockerd-at-a-time lock."""

    def __init__(self) -> None:
        self.lock = open(LOCK, "w")  # noqa: SIM115 - held until stop()
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.root = Path(tempfile.mkdtemp(prefix="dy-real-", dir="/tmp"))
        self.host = f"unix://{self.root / 'docker.sock'}"
        self.log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "-H", self.host, "--pidfile", str(self.root / "docker.pid"), "--bridge", "none",
             "--iptables=false"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("dockerd did not start: " + (self.root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(self.root))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()


def run_suite(tree: Path, deps: Path, host: str, report: Path, select: list[str]) -> None:
    extra = os.environ.get("DOCKER_PY_SUITE_PYTEST_ARGS", "").split()
    ignores = [f"--ignore=tests/integration/{m}" for m in SKIPPED_MODULES]
    # the credentials tests need docker-credential-* helpers, not an engine
    ignores.append("--ignore=tests/integration/credentials")
    # a HOME of its own per engine: the context tests write ~/.docker/contexts, and the two
    # runs go on at the same time. Without a ~/.docker/config.json docker-py keeps contexts in
    # ./contexts, the shared tree: so there is one.
    home = report.with_suffix(".home")
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker" / "config.json").write_text("{}\n")
    env = {**os.environ, "DOCKER_HOST": host, "PYTHONPATH": f"{deps}:{tree}", "HOME": str(home)}
    for var in ("DOCKER_TEST_API_VERSION", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(var, None)
    with open(report.with_suffix(".log"), "w") as log:
        subprocess.run(
            [sys.executable, "-m", "pytest", *(select or ["tests/integration"]), *ignores, "-q",
             "-p", "no:cacheprovider", "--timeout", "180", *extra, f"--junitxml={report}", "-o", "junit_family=xunit1"],
            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip


def run_engine(engine: str, tree: Path, deps: Path, out: Path, select: list[str]) -> None:
    if engine == "dockyard":
        d = make_daemon()
        try:
            make_images(d.host)
            run_suite(tree, deps, d.host, out / "dockyard.xml", select)
        finally:
            destroy_daemon(d)
    else:
        real = RealDockerd()
        try:
            make_images(real.host)
            run_suite(tree, deps, real.host, out / "dockerd.xml", select)
        finally:
            real.stop()


def outcomes(report: Path) -> dict[str, str]:
    res: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        res[name] = "fail" if kinds & {"failure", "error"} else "skip" if "skipped" in kinds else "pass"
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/var/tmp/dockyard-docker-py-suite")
    ap.add_argument("--source", help="a local git clone of docker/docker-py (default: clone from GitHub)")
    ap.add_argument("--only", choices=["dockyard", "dockerd"], help="run against one engine")
    ap.add_argument("--out", default=None, help="where the junit reports and logs go")
    ap.add_argument("select", nargs="*", help="test paths (relative to docker-py's root) instead of all")
    args = ap.parse_args()
    cache = Path(args.cache)
    tree = prepare_tests(cache, args.source)
    deps = prepare_deps(cache)
    out = Path(args.out or tempfile.mkdtemp(prefix="dy-pysuite-"))
    out.mkdir(parents=True, exist_ok=True)
    engines = [args.only] if args.only else ["dockyard", "dockerd"]
    # each engine in a thread of its own: dockyard's run does not wait for the dockerd lock
    threads = [threading.Thread(target=run_engine, args=(e, tree, deps, out, args.select)) for e in engines]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results = {e: outcomes(out / f"{e}.xml") for e in engines}
    for e in engines:
        counts = {k: sum(1 for v in results[e].values() if v == k) for k in ("pass", "fail", "skip")}
        print(f"{e}: {counts}  (report {out / (e + '.xml')}, log {out / (e + '.log')})")
    if len(engines) == 2:
        worse = sorted(t for t, v in results["dockerd"].items() if v == "pass" and results["dockyard"].get(t) != "pass")
        better = sorted(t for t, v in results["dockyard"].items() if v == "pass" and results["dockerd"].get(t) != "pass")
        print(f"\npass on dockerd, not on dockyard ({len(worse)}):")
        for t in worse:
            print(f"  {t}  [{results['dockyard'].get(t, 'missing')}]")
        print(f"\npass on dockyard, not on dockerd ({len(better)}):")
        for t in better:
            print(f"  {t}")
        return 1 if worse else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
