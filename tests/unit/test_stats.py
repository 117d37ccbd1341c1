"""cgroup v1 and v2 readers over fake directories, /proc parsers, and `ps` output filtering."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import errdefs
from dockyard.containers import stats, top

HOST_MEM = 8 * 1024**3
PROC_STAT = """cpu  100 5 50 1000 10 1 2 0 0 0
cpu0 50 2 25 500 5 1 1 0 0 0
cpu1 50 3 25 500 5 0 1 0 0 0
intr 12345
"""
# /proc/<pid>/net/dev, verbatim (its lines are wider than our limit)
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      12    1    2    0     0          0         0      900       7    3    4    0     0       0          0
"""


def write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


@pytest.fixture
def v1(tmp_path: Path) -> dict[str, Path]:
    cg = "dockyard/abc"
    cpu = tmp_path / "cpu,cpuacct" / cg
    write(cpu, {
        "cpuacct.usage": "123456789\n",
        "cpuacct.usage_percpu": "100000000 23456789 \n",
        "cpuacct.stat": "user 7\nsystem 3\n",
        "cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
    })  # fmt: skip
    mem = tmp_path / "memory" / cg
    write(mem, {
        "memory.usage_in_bytes": "4096000\n",
        "memory.max_usage_in_bytes": "5000000\n",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.failcnt": "0\n",
        "memory.stat": "cache 1000\nrss 2000\ntotal_inactive_file 512\n",
    })  # fmt: skip
    write(tmp_path / "pids" / cg, {"pids.current": "3\n", "pids.max": "max\n"})
    write(tmp_path / "blkio" / cg, {
        "blkio.throttle.io_service_bytes_recursive": (
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n"
        ),
        "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
    })  # fmt: skip
    # Debian's hybrid layout: cpu and cpuacct are symlinks to the joint hierarchy
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    (tmp_path / "unified").mkdir()
    return {"root": tmp_path}


def test_cgroup_dirs_v1_from_proc(v1: dict[str, Path]) -> None:
    root = v1["root"]
    text = (
        "12:pids:/dockyard/abc\n5:cpu,cpuacct:/dockyard/abc\n4:memory:/dockyard/abc\n"
        "1:name=systemd:/x\n0::/\n"
    )
    cg = stats.cgroup_dirs(text, "/dockyard/other", root)
    assert cg.version == 1
    assert cg.dirs["cpuacct"] == root / "cpuacct" / "dockyard/abc"
    assert cg.dirs["memory"] == root / "memory" / "dockyard/abc"
    assert cg.dirs["blkio"] == root / "blkio" / "dockyard/other"  # not in /proc: the spec's path


def test_cgroup_dirs_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io\n")
    cg = stats.cgroup_dirs("0::/dockyard/abc\n", "/dockyard/zzz", tmp_path)
    assert cg == stats.CgroupDirs(2, {"": tmp_path / "dockyard/abc"})
    assert stats.cgroup_dirs(None, "/dockyard/zzz", tmp_path).dirs[""] == tmp_path / "dockyard/zzz"


def test_read_v1(v1: dict[str, Path]) -> None:
    cg = stats.cgroup_dirs(None, "/dockyard/abc", v1["root"])
    out = stats.read_v1(cg.dirs, HOST_MEM, clk_tck=100)
    cpu = out["cpu_stats"]["cpu_usage"]
    assert cpu == {
        "total_usage": 123456789,
        "percpu_usage": [100000000, 23456789],
        "usage_in_kernelmode": 30_000_000,
        "usage_in_usermode": 70_000_000,
    }
    throttling = out["cpu_stats"]["throttling_data"]
    assert throttling == {"periods": 10, "throttled_periods": 2, "throttled_time": 5000}
    mem = out["memory_stats"]
    assert mem["usage"] == 4096000 and mem["max_usage"] == 5000000
    assert mem["limit"] == HOST_MEM  # unlimited: the host's memory
    assert mem["stats"]["total_inactive_file"] == 512
    assert out["pids_stats"] == {"current": 3}
    blk = out["blkio_stats"]
    assert {"major": 8, "minor": 0, "op": "Read", "value": 4096} in blk["io_service_bytes_recursive"]
    assert len(blk["io_service_bytes_recursive"]) == 3  # the Total line is dropped
    assert blk["io_serviced_recursive"][1]["value"] == 2


def test_read_v1_limit_and_missing_controllers(v1: dict[str, Path], tmp_path: Path) -> None:
    cg = stats.cgroup_dirs(None, "/dockyard/abc", v1["root"])
    (cg.dirs["memory"] / "memory.limit_in_bytes").write_text("67108864\n")
    (cg.dirs["pids"] / "pids.max").write_text("100\n")
    out = stats.read_v1(cg.dirs, HOST_MEM)
    assert out["memory_stats"]["limit"] == 67108864
    assert out["pids_stats"] == {"current": 3, "limit": 100}
    empty = stats.read_v1({}, HOST_MEM)
    assert empty["memory_stats"] == {} and empty["pids_stats"] == {}
    assert empty["cpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_read_v2(tmp_path: Path) -> None:
    cg = tmp_path / "dockyard" / "abc"
    write(cg, {
        "cpu.stat": (
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 30\n"
        ),
        "memory.current": "1048576\n",
        "memory.max": "max\n",
        "memory.stat": "anon 4096\nfile 8192\ninactive_file 1024\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 2\noom_kill 1\n",
        "pids.current": "2\n",
        "pids.max": "max\n",
        "io.stat": "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n",
    })  # fmt: skip
    out = stats.read_v2(cg, HOST_MEM)
    assert out["cpu_stats"]["cpu_usage"] == {
        "total_usage": 2_000_000, "usage_in_kernelmode": 500_000, "usage_in_usermode": 1_500_000,
    }  # fmt: skip
    throttling = out["cpu_stats"]["throttling_data"]
    assert throttling == {"periods": 4, "throttled_periods": 1, "throttled_time": 30_000}
    assert out["memory_stats"] == {
        "usage": 1048576, "stats": {"anon": 4096, "file": 8192, "inactive_file": 1024}, "limit": HOST_MEM,
        "failcnt": 2,
    }  # fmt: skip
    assert out["pids_stats"] == {"current": 2, "limit": 2**64 - 1}
    assert out["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 512},
    ]
    assert out["blkio_stats"]["io_serviced_recursive"] is None
    (cg / "memory.max").write_text("33554432\n")
    assert stats.read_v2(cg, HOST_MEM)["memory_stats"]["limit"] == 33554432


def test_system_cpu_and_net_dev() -> None:
    assert stats.system_cpu(PROC_STAT, clk_tck=100) == ((100 + 5 + 50 + 1000 + 10 + 1 + 2) * 10_000_000, 2)
    nets = stats.parse_net_dev(NET_DEV)
    assert list(nets) == ["eth0"]
    assert nets["eth0"] == {
        "rx_bytes": 1500, "rx_packets": 12, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 900, "tx_packets": 7, "tx_errors": 3, "tx_dropped": 4,
    }  # fmt: skip


def test_sampler_over_fake_proc(v1: dict[str, Path], tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    write(proc, {"stat": PROC_STAT, "meminfo": "MemTotal:  8388608 kB\nMemFree: 1 kB\n"})
    write(proc / "42", {"cgroup": "4:memory:/dockyard/abc\n"})
    write(proc / "42" / "net", {"dev": NET_DEV})
    sampler = stats.Sampler.for_container("abc", 42, v1["root"], proc)
    s1 = sampler.sample(1_700_000_000_000_000_000)
    assert s1["cpu_stats"]["online_cpus"] == 2
    assert s1["cpu_stats"]["system_cpu_usage"] > 0
    assert s1["memory_stats"]["limit"] == 8 * 1024**3
    assert "eth0" in s1["networks"]
    first = stats.combine(s1, None, "/web", "abc")
    assert first["preread"] == "0001-01-01T00:00:00Z"
    assert first["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    s2 = sampler.sample(1_700_000_001_000_000_000)
    second = stats.combine(s2, s1, "/web", "abc")
    assert second["preread"] == s1["read"] and second["precpu_stats"] == s1["cpu_stats"]
    assert (second["name"], second["id"], second["num_procs"]) == ("/web", "abc", 0)
    assert second["storage_stats"] == {}


def test_empty_stats_shape() -> None:
    e = stats.empty_stats("/x", "id1")
    assert e["read"] == e["preread"] == "0001-01-01T00:00:00Z"
    assert e["memory_stats"] == {} and e["pids_stats"] == {}
    assert e["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert "networks" not in e


# ---- top ---------------------------------------------------------------------------------------

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init
root         200     150  0 10:01 ?        00:00:00 sleep 1000
root         201     200  0 10:01 ?        00:00:00 sh -c echo a  b
"""


def test_parse_ps_output_keeps_container_pids_and_merges_cmd() -> None:
    out = top.parse_ps_output(PS_EF, [200, 201])
    assert out["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert out["Processes"] == [
        ["root", "200", "150", "0", "10:01", "?", "00:00:00", "sleep 1000"],
        ["root", "201", "200", "0", "10:01", "?", "00:00:00", "sh -c echo a b"],
    ]


def test_parse_ps_output_threads_and_errors() -> None:
    text = "PID TTY TIME CMD\n200 ? 00:00:00 app\n- - 00:00:00 -\n300 ? 00:00:00 other\n- - 00:00:00 -\n"
    assert top.parse_ps_output(text, [200])["Processes"] == [
        ["200", "?", "00:00:00", "app"],
        ["-", "-", "00:00:00", "-"],
    ]
    with pytest.raises(errdefs.Internal, match="PID field"):
        top.parse_ps_output("USER CMD\nroot x\n", [1])
    with pytest.raises(errdefs.InvalidArgument):
        top.validate_ps_args("-o pid,comm -o user=PID")
    top.validate_ps_args("-o pid=PID,comm")
