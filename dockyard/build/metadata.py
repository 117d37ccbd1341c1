"""The executors of metadata instructions: ENV, LABEL, MAINTAINER, CMD, ENTRYPOINT, EXPOSE,
USER, VOLUME, STOPSIGNAL, SHELL, ONBUILD, HEALTHCHECK and ARG.

Owns what each of them does to the stage's image config and the history comment it
writes (dockerd's words). A metadata step commits a config with an `empty_layer` history
entry and no container, unless the cache has it.
"""

from __future__ import annotations

import signal as signals
from collections.abc import Callable
from typing import Any

from dockyard.build import progress
from dockyard.build._gofmt import go_healthcheck, go_quote_list, parse_duration
from dockyard.build.cache import cache_key
from dockyard.build.cachelookup import cached
from dockyard.build.dockerfile import Instruction, arg_pairs
from dockyard.build.imageconfig import StageState
from dockyard.build.model import BuildError
from dockyard.build.session import BuildSession, Executor

__all__ = ["EXECUTORS"]


async def _metadata(
    b: BuildSession,
    s: StageState,
    comment: str,
    mutate: Callable[[], None],
    *,
    shell: list[str] | None = None,
) -> None:
    created_by = " ".join([*(shell or s.shell), "#(nop) ", comment])
    key = cache_key(s.image_id, created_by)
    if await cached(b, s, key, created_by, mutate):
        return  # the cached image already carries the step's config
    mutate()
    before = s.layers
    image_id = await b.commit(s, created_by, None)
    b.record(key, s, created_by=created_by, layers_before=before)
    await b.emit(progress.StepImage(image_id))


async def do_env(b: BuildSession, s: StageState, ins: Instruction) -> None:
    pairs = [(b.x(s, k, ins), b.x(s, v, ins)) for k, v in ins.pairs()]

    def apply() -> None:
        env = list(s.config.get("Env") or [])
        for k, v in pairs:
            idx = next((i for i, e in enumerate(env) if e.partition("=")[0] == k), None)
            if idx is None:
                env.append(f"{k}={v}")
            else:
                env[idx] = f"{k}={v}"
        s.config["Env"] = env

    await _metadata(b, s, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), apply)


async def do_label(b: BuildSession, s: StageState, ins: Instruction) -> None:
    pairs = ins.pairs() if ins.literal else [(b.x(s, k, ins), b.x(s, v, ins)) for k, v in ins.pairs()]

    def apply() -> None:
        labels = dict(s.config.get("Labels") or {})
        labels.update(dict(pairs))
        s.config["Labels"] = labels

    await _metadata(b, s, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), apply)


async def do_maintainer(b: BuildSession, s: StageState, ins: Instruction) -> None:
    name = ins.args[0]

    def apply() -> None:
        s.cfg["author"] = name

    await _metadata(b, s, "MAINTAINER " + name, apply)


def _cmd_value(s: StageState, ins: Instruction) -> list[str]:
    if ins.json:
        return list(ins.args)
    if not ins.args:
        return []
    return [*s.shell, ins.args[0]]


async def do_cmd(b: BuildSession, s: StageState, ins: Instruction) -> None:
    cmd = _cmd_value(s, ins)

    def apply() -> None:
        s.config["Cmd"] = cmd or None

    s.cmd_set = True
    await _metadata(b, s, "CMD " + go_quote_list(cmd), apply)


async def do_entrypoint(b: BuildSession, s: StageState, ins: Instruction) -> None:
    ep = _cmd_value(s, ins)

    def apply() -> None:
        s.config["Entrypoint"] = ep or None
        if not s.cmd_set:
            s.config["Cmd"] = None

    await _metadata(b, s, "ENTRYPOINT " + go_quote_list(ep), apply)


async def do_expose(b: BuildSession, s: StageState, ins: Instruction) -> None:
    ports: list[str] = []
    words = [b.x(s, w, ins) for w in sorted(ins.args)]  # dockerd's parser sorts them
    for p in words:
        num, _, proto = p.partition("/")
        lo, _, hi = num.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise BuildError(f"invalid containerPort: {num}")
        proto = (proto or "tcp").lower()
        for n in range(int(lo), int(hi or lo) + 1):
            ports.append(f"{n}/{proto}")

    def apply() -> None:
        exposed = dict(s.config.get("ExposedPorts") or {})
        for p in ports:
            exposed[p] = {}
        s.config["ExposedPorts"] = exposed

    await _metadata(b, s, "EXPOSE " + " ".join(words), apply)


async def do_user(b: BuildSession, s: StageState, ins: Instruction) -> None:
    user = b.x(s, ins.args[0], ins)

    def apply() -> None:
        s.config["User"] = user

    await _metadata(b, s, "USER " + user, apply)


async def do_volume(b: BuildSession, s: StageState, ins: Instruction) -> None:
    vols = [b.x(s, v, ins) for v in ins.args]
    for v in vols:
        if not v.strip():
            raise BuildError("VOLUME specified can not be an empty string")

    def apply() -> None:
        cur = dict(s.config.get("Volumes") or {})
        for v in vols:
            cur[v] = {}
        s.config["Volumes"] = cur

    await _metadata(b, s, "VOLUME [" + " ".join(vols) + "]", apply)


async def do_stopsignal(b: BuildSession, s: StageState, ins: Instruction) -> None:
    sig = b.x(s, ins.args[0], ins)
    name = sig.upper() if not sig.isdigit() else sig
    if not sig.isdigit():
        try:
            signals.Signals[name if name.startswith("SIG") else "SIG" + name]
        except KeyError:
            raise BuildError(f"Invalid signal: {sig}") from None

    def apply() -> None:
        s.config["StopSignal"] = sig

    await _metadata(b, s, "STOPSIGNAL " + sig, apply)


async def do_shell(b: BuildSession, s: StageState, ins: Instruction) -> None:
    sh = list(ins.args)

    def apply() -> None:
        s.config["Shell"] = sh

    await _metadata(b, s, "SHELL [" + " ".join(sh) + "]", apply, shell=sh)  # dockerd: the new shell


async def do_onbuild(b: BuildSession, s: StageState, ins: Instruction) -> None:
    trigger = ins.args[0]
    word, _, rest = trigger.partition(" ")
    trigger = word.upper() + (" " + rest if rest else "")

    def apply() -> None:
        s.config["OnBuild"] = [*(s.config.get("OnBuild") or []), trigger]

    await _metadata(b, s, "ONBUILD " + trigger, apply)


async def do_healthcheck(b: BuildSession, s: StageState, ins: Instruction) -> None:
    if ins.args[0] == "NONE":
        hc: dict[str, Any] = {"Test": ["NONE"]}
    else:
        hc = {"Test": list(ins.args)}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):  # fmt: skip
            v = ins.flag(flag)
            if v:
                d = parse_duration(v, flag)
                if d and d < 1_000_000:
                    raise BuildError(f'Interval "{flag}" cannot be less than 1ms')
                if d:
                    hc[key] = d
        r = ins.flag("retries")
        if r:
            if not r.lstrip("-").isdigit() or int(r) < 0:
                raise BuildError(
                    "--retries cannot be negative" if r.lstrip("-").isdigit() else f"invalid retries {r!r}"
                )
            if int(r):
                hc["Retries"] = int(r)

    def apply() -> None:
        s.config["Healthcheck"] = hc

    await _metadata(b, s, "HEALTHCHECK " + go_healthcheck(hc), apply)


async def do_arg(b: BuildSession, s: StageState, ins: Instruction) -> None:
    buildargs = b.opts.buildargs
    decls = []
    for name, default in arg_pairs(ins):
        if name in buildargs and buildargs[name] is not None:
            value: str | None = buildargs[name]
            b.used_args.add(name)
        elif default is not None:
            value = b.x(s, default, ins)
        elif name in b.meta:
            value = b.meta[name]
        else:
            value = None
        if name in buildargs:
            b.used_args.add(name)
        decls.append((name, value, default))

    def apply() -> None:
        pass

    for name, value, _ in decls:
        s.args[name] = value
    comment = "ARG " + " ".join(n + (f"={d}" if d is not None else "") for n, _, d in decls)
    await _metadata(b, s, comment, apply)


EXECUTORS: dict[str, Executor] = {
    "ENV": do_env, "LABEL": do_label, "MAINTAINER": do_maintainer, "CMD": do_cmd, "ENTRYPOINT": do_entrypoint,
    "EXPOSE": do_expose, "USER": do_user, "VOLUME": do_volume, "STOPSIGNAL": do_stopsignal, "SHELL": do_shell,
    "ONBUILD": do_onbuild, "HEALTHCHECK": do_healthcheck, "ARG": do_arg,
}  # fmt: skip
