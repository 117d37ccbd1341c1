"""Golden output of Docker's stream formats on both sides: the daemon's 8-byte-header frames
(api/streams.py), the client's sans-IO decoders (client/framing.py), and detach keys (the
daemon's stdin pump in api/routes/containers.py, the CLI's scanner in cli/streams.py)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from dockyard import errdefs
from dockyard.api.routes.containers import parse_detach_keys as daemon_detach_keys
from dockyard.api.routes.containers import pump_input
from dockyard.api.streams import MULTIPLEXED_STREAM, RAW_STREAM, STDERR, STDIN, STDOUT, SYSERR, frame
from dockyard.cli.streams import DetachScanner
from dockyard.cli.streams import parse_detach_keys as cli_detach_keys
from dockyard.client.framing import FrameDecoder, JSONLineDecoder, encode_frame
from tests.unit._golden import check_json

FRAMES = [(STDOUT, b"hello\n"), (STDERR, b"oops\n"), (STDIN, b"echo"), (SYSERR, b""), (STDOUT, b"x" * 300)]


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def test_multiplexed_frames() -> None:
    wire = b"".join(frame(s, d) for s, d in FRAMES)
    assert wire == b"".join(encode_frame(s, d) for s, d in FRAMES)  # both sides frame alike

    def decode(pieces: list[bytes], tty: bool = False) -> dict[str, Any]:
        dec = FrameDecoder(tty=tty)
        out = []
        for p in pieces:
            out.append([[s, d.decode()[:12], len(d)] for s, d in dec.feed(p)])
        return {"per_feed": out, "pending": dec.pending}

    check_json("framing_multiplexed.json", {
        "content_types": [MULTIPLEXED_STREAM, RAW_STREAM],
        "headers": [frame(s, d)[:8].hex() for s, d in FRAMES],
        "whole": decode([wire]),
        "cut_inside_headers_and_payloads": decode(_pieces(wire, [3, 8, 12, 14, 30, 40, 41])),
        "byte_by_byte_totals": _by_byte(wire),
        "truncated": decode([wire[:-5]]),
        "tty_is_raw_stdout": decode([b"\x01\x00\x00\x00raw", b""], tty=True),
    })  # fmt: skip


def _by_byte(wire: bytes) -> list[list[int]]:
    dec = FrameDecoder()
    got: list[list[int]] = []
    for i in range(len(wire)):
        got += [[s, len(d)] for s, d in dec.feed(wire[i : i + 1])]
    return got


def test_json_lines() -> None:
    dec = JSONLineDecoder()
    feeds = [
        b'{"status":"Pulling',
        b' fs layer","id":"a"}\n\n{"stream":"Step 1/2\\n"}\r\n{"aux"',
        b':{"ID":"sha256:1"}}',
    ]
    per_feed = [dec.feed(f) for f in feeds]
    tail = dec.close()
    glued = JSONLineDecoder()
    check_json("framing_json_lines.json", {
        "per_feed": per_feed,
        "close": tail,
        "concatenated_without_newlines": glued.feed(b'{"a":1}{"b":2} {"c":3}') + glued.close(),
        "empty_close": JSONLineDecoder().close(),
    })  # fmt: skip


SPECS = ["ctrl-p,ctrl-q", "ctrl-a", "ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", "a,b,c", "ctrl-Z,x",
         "", "ctrl-p,,ctrl-q", "ctrl-", "ctrl-1", "ctrl-pq", "ab"]  # fmt: skip


def _daemon_keys(spec: str) -> Any:
    try:
        return daemon_detach_keys(spec).hex()
    except errdefs.DockyardError as err:
        return {"error": type(err).__name__, "message": str(err)}


def _cli_keys(spec: str | None) -> Any:
    try:
        return cli_detach_keys(spec).hex()
    except ValueError as err:
        return {"error": "ValueError", "message": str(err)}


class _Stream:
    """What pump_input reads: the client's bytes, one chunk per read, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


def _pump(keys: bytes, chunks: list[bytes]) -> dict[str, Any]:
    written: list[str] = []
    events: list[str] = []

    async def write(data: bytes) -> None:
        written.append(data.decode("latin-1"))

    asyncio.run(pump_input(_Stream(chunks), write, lambda: events.append("close"), keys,  # type: ignore[arg-type]
                           lambda: events.append("detach")))  # fmt: skip
    return {"stdin": written, "events": events}


def _scan(keys: bytes, chunks: list[bytes]) -> list[Any]:
    sc = DetachScanner(keys)
    out: list[Any] = []
    for c in chunks:
        data, detached = sc.feed(c)
        out.append([data.decode("latin-1"), detached])
        if detached:
            break
    return out


INPUTS = {
    "plain": [b"ls\n", b"exit\n"],
    "detach_in_one_chunk": [b"echo a\n\x10\x11after"],
    "detach_split_across_chunks": [b"abc\x10", b"\x11zzz"],
    "false_start_released": [b"a\x10b", b"\x10\x10\x11"],
    "prefix_at_eof_held": [b"x\x10"],
}


def test_detach_keys() -> None:
    # What the golden file shows today, kept as is (this test pins, it does not judge):
    # the daemon's pump drops stdin bytes that precede the keys in the same chunk
    # ("detach_in_one_chunk"), misses keys that follow a false start in one chunk
    # ("false_start_released"), and accepts "ctrl-1" which the CLI refuses. (Docker's own
    # proxy only matches keys arriving one byte per read, as typed on a terminal.)
    ctrl_pq = b"\x10\x11"
    check_json("framing_detach_keys.json", {
        "daemon_parse": {s: _daemon_keys(s) for s in SPECS},
        "cli_parse": {s: _cli_keys(s) for s in SPECS},
        "cli_parse_default": _cli_keys(None),
        "daemon_pump": {name: _pump(ctrl_pq, chunks) for name, chunks in INPUTS.items()},
        "daemon_pump_without_keys": _pump(b"", INPUTS["detach_in_one_chunk"]),
        "cli_scanner": {name: _scan(ctrl_pq, chunks) for name, chunks in INPUTS.items()},
        "cli_scanner_without_keys": _scan(b"", INPUTS["detach_in_one_chunk"]),
    })  # fmt: skip
