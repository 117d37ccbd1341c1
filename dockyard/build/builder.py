"""The builder: runs a parsed Dockerfile's stages as a graph and commits each step as an image.

Owns step semantics (what each instruction does to the image config, history and files),
the stage graph (only the stages the target needs, independent ones concurrently), the
cache lookups, and clean-up. It must not know HTTP: progress goes out through an `emit`
callback as Docker's JSON-stream messages (`{"stream": ...}`, `{"aux": ...}`).

Steps, like dockerd's classic builder:

- metadata instructions (ENV, LABEL, CMD, ...) make an image with an `empty_layer`
  history entry, without a container;
- RUN creates a real container from the current image (on the default bridge, as
  dockerd's, unless `networkmode` says otherwise),
  streams its output, commits its upper dir as a layer, and removes the container,
  also on failure (unless rm=false and forcerm=false);
- COPY/ADD/WORKDIR mount a snapshot of the current image, write into it (ownership,
  `--chmod`, wildcards, directories, ADD's tar extraction) and commit its upper dir.

Every step's image is the cache entry for that step. When the build ends, images it made
that are neither tagged nor anyone's parent (other stages' tips, the tip of a failed
stage) are deleted, so a build leaves no dangling image but the one it produced; their
layers stay pinned by the cache.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import secrets
import signal as signals
import tarfile
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard._sys import mount as sysmount
from dockyard._sys.rootdir import RootDir
from dockyard.build import _files
from dockyard.build import context as ctxmod
from dockyard.build.cache import BuildCache, cache_key
from dockyard.build.dockerfile import Dockerfile, Instruction, Stage, arg_pairs, expand, parse
from dockyard.images.unpack import ARCHIVE, Extractor, UnsafeArchive
from dockyard.timefmt import now_rfc3339 as rfc3339_now

__all__ = ["BuildError", "BuildOptions", "Builder"]

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
# Pulls an image (reference, the request's X-Registry-Config), yielding progress messages.
Puller = Callable[[str, "str | None"], AsyncIterator[dict[str, Any]]]

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's predefined ARGs: usable with --build-arg without an ARG line, never reported unused
_PREDEFINED = {
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}  # fmt: skip
_DOCKER_VERSION = "27.5.0"


class BuildError(errdefs.InvalidArgument):
    """A build step failed; `code` is the errorDetail code (a RUN's exit status)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    pull: bool = False
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    shmsize: int = 0
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpusetcpus: str = ""
    cpuperiod: int = 0
    cpuquota: int = 0
    platform: str = ""
    quiet: bool = False
    registry_config: str | None = None  # the X-Registry-Config header: credentials by registry
    cachefrom: list[str] = field(default_factory=list)  # images whose history may stand in for steps


@dataclass
class _StageState:
    stage: Stage
    image_id: str = ""  # "" until the first image (FROM scratch)
    cfg: dict[str, Any] = field(default_factory=dict)  # the whole image config
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    cmd_set: bool = False

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.cfg.setdefault("config", {})
        return cfg

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _go_quote_list(items: list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`, as dockerd writes CMD/ENTRYPOINT in history."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(value: str, flag: str) -> int:
    if value in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise BuildError(f'time: invalid duration "{value}"')
    return int(total)


class Builder:
    """Flow::

        builder = Builder(containers, images, cache, tmp_dir, running_marks_dir)
        image_id = await builder.build(Context(ctx_dir, "Dockerfile"), BuildOptions(tags=["app"]), emit)
    """

    def __init__(
        self,
        containers: Any,
        images: Any,
        cache: BuildCache,
        tmp: Path,
        running_marks: Path,
        pull: Puller | None = None,
    ) -> None:
        self.containers = containers
        self.images = images
        self.cache = cache
        self.pull = pull
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.running_marks = running_marks  # one empty file per RUN container while its step runs
        running_marks.mkdir(parents=True, exist_ok=True)
        self._builds = 0

    def statistics(self) -> dict[str, int]:
        return {"builds_running": self._builds}

    # ---- the whole build -------------------------------------------------------------------

    async def build(self, ctx: ctxmod.Context, opts: BuildOptions, emit: Emit) -> str:
        if opts.platform and not opts.platform.startswith("linux"):
            raise BuildError(f'"{opts.platform}" is not a supported platform')
        targets = [self.images.parse_target(t, None) for t in opts.tags]  # bad tags fail first
        df = parse(await asyncio.to_thread(ctx.dockerfile_bytes))
        run = _Run(self, ctx, df, opts, emit)
        self._builds += 1
        try:
            image_id = await run.execute()
        except BaseException:
            # dockerd with q=1: the output it held back is sent when the build fails, before
            # the error (so `docker build -q` shows it and exits with the RUN's code)
            with contextlib.suppress(Exception):
                await run.flush_quiet()
            raise
        finally:
            self._builds -= 1
            await run.cleanup()
        for t in targets:
            await self.images.tag(image_id, str(t), None)
        if not opts.quiet:
            await emit({"aux": {"ID": image_id}})
            await emit({"stream": f"Successfully built {_short(image_id)}\n"})
            for t in targets:
                await emit({"stream": f"Successfully tagged {t.familiar()}\n"})
        else:
            await emit({"aux": {"ID": image_id}})
            await emit({"stream": image_id + "\n"})
        return image_id


class _Run:
    """One build: its stages' states, step numbering, and the images it made."""

    def __init__(self, b: Builder, ctx: ctxmod.Context, df: Dockerfile, opts: BuildOptions, emit: Emit) -> None:
        self.b = b
        self.ctx = ctx
        self.df = df
        self.opts = opts
        self._emit = emit
        self.made: list[str] = []  # image IDs this build created
        self.held: list[dict[str, Any]] = []  # the output a quiet build holds back
        self.results: dict[int, asyncio.Future[str]] = {}
        self.used_args: set[str] = set()
        self.meta: dict[str, str | None] = {}
        self.final = ""
        self.sources: list[Any] = []  # the cache-from images found here (dockerd skips the others)
        for ref in opts.cachefrom:
            try:
                self.sources.append(b.images.resolve(ref))
            except errdefs.NotFound:
                log.warning("cache-from image %s not found, skipping it", ref)
        for ins in df.meta_args:
            for name, default in arg_pairs(ins):
                value = opts.buildargs.get(name) if opts.buildargs.get(name) is not None else None
                if value is None and default is not None:
                    value = expand(default, {k: v for k, v in self.meta.items() if v is not None}, df.escape, ins.line)
                self.meta[name] = value
                if name in opts.buildargs:
                    self.used_args.add(name)
        # the target and what it needs
        if opts.target:
            idx = df.stage_index(opts.target)
            if idx is None:
                raise BuildError(f"failed to reach build target {opts.target} in Dockerfile")
        else:
            idx = len(df.stages) - 1
        self.target = idx
        for k, v in sorted(opts.labels.items()):  # dockerd: a LABEL step per --label, on the target
            df.stages[idx].instructions.append(Instruction("LABEL", 0, f"LABEL {k}={v}", (k, v), literal=True))
        self.needed = self._needed(idx)
        self.steps: dict[tuple[int, int], int] = {}
        n = len(df.meta_args)  # dockerd numbers the ARGs before the first FROM as steps
        for st in df.stages:
            if st.index not in self.needed:
                continue
            n += 1
            self.steps[(st.index, -1)] = n
            for i in range(len(st.instructions)):
                n += 1
                self.steps[(st.index, i)] = n
        self.total = n

    async def emit(self, msg: dict[str, Any]) -> None:
        if self.opts.quiet:
            self.held.append(msg)
            return
        await self._emit(msg)

    async def flush_quiet(self) -> None:
        held, self.held = self.held, []
        for msg in held:
            await self._emit(msg)

    def _meta_env(self) -> dict[str, str]:
        return {k: v for k, v in self.meta.items() if v is not None}

    def _stage_ref(self, ref: str, before: int) -> int | None:
        idx = self.df.stage_index(ref)
        if idx is not None and idx < before:
            return idx
        return None

    def _needed(self, target: int) -> set[int]:
        need: set[int] = set()
        todo = [target]
        while todo:
            i = todo.pop()
            if i in need:
                continue
            need.add(i)
            st = self.df.stages[i]
            base = expand(st.base, self._meta_env(), self.df.escape, st.line)
            dep = self._stage_ref(base, i)
            if dep is not None:
                todo.append(dep)
            for ins in st.instructions:
                src = ins.flag("from")
                if ins.cmd == "COPY" and src:
                    dep = self._stage_ref(expand(src, self._meta_env(), self.df.escape, ins.line), i)
                    if dep is not None:
                        todo.append(dep)
        return need

    async def execute(self) -> str:
        for n, ins in enumerate(self.df.meta_args, 1):
            await self.emit({"stream": f"Step {n}/{self.total} : {ins.original}\n"})
        loop = asyncio.get_running_loop()
        for i in self.needed:
            self.results[i] = loop.create_future()
        try:
            async with asyncio.TaskGroup() as tg:
                for i in sorted(self.needed):
                    tg.create_task(self._stage_task(i))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        self.final = self.results[self.target].result()
        unused = sorted(k for k in self.opts.buildargs if k not in self.used_args and k not in _PREDEFINED)
        if unused:
            await self.emit({"stream": f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"})
        return self.final

    async def _stage_task(self, i: int) -> None:
        fut = self.results[i]
        try:
            fut.set_result(await self._run_stage(self.df.stages[i]))
        except BaseException as err:
            if not fut.done():
                fut.set_exception(err if isinstance(err, Exception) else asyncio.CancelledError())
                fut.exception()  # retrieved: other stages may never await it
            raise

    async def stage_image(self, idx: int) -> str:
        return await asyncio.shield(self.results[idx])

    async def cleanup(self) -> None:
        """Delete images this build made that ended up untagged and childless."""
        keep = {self.final} if self.final else set()
        changed = True
        while changed:
            changed = False
            parents = self.b.images.parent_ids()
            for image_id in reversed(self.made):
                if image_id in keep or image_id in parents:
                    continue
                img = self.b.images.get(image_id)
                if img is None or img.repo_tags or img.repo_digests:
                    continue
                try:
                    await self.b.images.delete(image_id.removeprefix("sha256:"), force=False, noprune=True)
                    changed = True
                except errdefs.DockyardError as err:
                    log.debug("build clean-up kept %s: %s", image_id, err)

    # ---- one stage ----------------------------------------------------------------------------

    async def _run_stage(self, st: Stage) -> str:
        env = self._meta_env()
        base = expand(st.base, env, self.df.escape, st.line)
        s = _StageState(st)
        dep = self._stage_ref(base, st.index)
        if dep is not None:
            s.image_id = await self.stage_image(dep)
        await self.emit({"stream": f"Step {self.steps[(st.index, -1)]}/{self.total} : {st.original}\n"})
        if dep is not None:
            pass
        elif base.lower() == "scratch":
            s.image_id = ""
        else:
            if not base:
                raise BuildError("base name (" + st.base + ") should not be blank")
            s.image_id = await self._image(base, always_pull=self.opts.pull)
        if s.image_id:
            img = self.b.images.get(s.image_id)
            s.cfg = json.loads(img.config_bytes)
            await self.emit({"stream": f" ---> {_short(s.image_id)}\n"})
        else:
            s.cfg = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
            if self.opts.platform:
                s.cfg["os"], _, arch = self.opts.platform.partition("/")
                s.cfg["architecture"] = arch or "amd64"
        for key in ("container", "container_config", "comment", "author"):
            s.cfg.pop(key, None)
        # dockerd's beginStage: a stage whose base sets no PATH gets the default one
        base_env = list(s.config.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in base_env):
            s.config["Env"] = [*base_env, "PATH=" + DEFAULT_PATH]
        triggers = list(s.config.get("OnBuild") or [])
        if triggers:
            s.config["OnBuild"] = None
            await self.emit({"stream": f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n"})
            for t in triggers:
                ins = parse(f"FROM scratch\n{t}\n").stages[0].instructions[0]
                await self._step(s, ins)
        for i, ins in enumerate(st.instructions):
            await self.emit({"stream": f"Step {self.steps[(st.index, i)]}/{self.total} : {ins.original}\n"})
            await self._step(s, ins)
        if not s.image_id:
            s.image_id = await self._commit(s, "", None)
        return s.image_id

    async def _image(self, ref: str, *, always_pull: bool) -> str:
        """The ID of an image named by FROM or COPY --from, pulled when it is not here (or
        always, with `pull`), as dockerd's builder does; the pull's progress goes out."""
        if not always_pull:
            with contextlib.suppress(errdefs.NotFound):
                return self.b.images.resolve(ref).id  # type: ignore[no-any-return]
        if self.b.pull is None:
            raise BuildError(f"No such image: {ref}")
        try:
            async for msg in self.b.pull(ref, self.opts.registry_config):
                await self.emit(msg)
            return self.b.images.resolve(ref).id  # type: ignore[no-any-return]
        except errdefs.DockyardError as err:
            raise BuildError(str(err)) from None

    # ---- steps ----------------------------------------------------------------------------------

    def _env(self, s: _StageState) -> dict[str, str]:
        """Variables for expansion: the stage's ARGs with a value, then its ENV (ENV wins)."""
        env = {k: v for k, v in s.args.items() if v is not None}
        for e in s.config.get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    def _x(self, s: _StageState, word: str, ins: Instruction) -> str:
        return expand(word, self._env(s), self.df.escape, ins.line)

    async def _step(self, s: _StageState, ins: Instruction) -> None:
        await getattr(self, "_do_" + ins.cmd.lower())(s, ins)

    async def _commit(self, s: _StageState, created_by: str, layer_dir: Path | None, *, nop: bool = True) -> str:
        cfg = json.loads(json.dumps(s.cfg))
        created = rfc3339_now()
        cfg["created"] = created
        cfg["docker_version"] = _DOCKER_VERSION
        if created_by:
            entry: dict[str, Any] = {"created": created, "created_by": created_by}
            if layer_dir is None:
                entry["empty_layer"] = True
            cfg.setdefault("history", []).append(entry)
        img = await self.b.images.create_image(cfg, parent=s.image_id, layer_dir=layer_dir)
        self.made.append(img.id)
        s.image_id = img.id
        s.cfg = json.loads(img.config_bytes)
        return str(img.id)

    async def _cached(
        self, s: _StageState, key: str, created_by: str, mutate: Callable[[], None] | None = None
    ) -> bool:
        """Is the step in the cache (then `s` moves onto its image)? `mutate` is a metadata
        step's change to the config, applied here only when a cache-from image supplies it."""
        if self.opts.nocache:
            return False
        img = await self.b.cache.lookup(key)
        if img is not None and self.opts.cachefrom and not self._in_source_chains(img.id):
            # with cache-from, dockerd trusts only the sources' own parent chains: none at all
            # when no source image exists (its image cache then has no local part)
            img = None
        if img is None and self.sources:
            img = await self._restore_from_sources(s, key, created_by, mutate)
        if img is None:
            return False
        if self.b.images.get(img.id) is not None and img.id not in self.made:
            self.made.append(img.id)
        s.image_id = img.id
        s.cfg = json.loads(img.config_bytes)
        await self.emit({"stream": " ---> Using cache\n"})
        await self.emit({"stream": f" ---> {_short(img.id)}\n"})
        return True

    def _in_source_chains(self, image_id: str) -> bool:
        for src in self.sources:
            cur = self.b.images.get(src.parent) if src.parent else None
            while cur is not None:
                if cur.id == image_id:
                    return True
                cur = self.b.images.get(cur.parent) if cur.parent else None
        return False

    async def _restore_from_sources(
        self, s: _StageState, key: str, created_by: str, mutate: Callable[[], None] | None
    ) -> Any:
        """dockerd's cache-from: a source image whose history and layers start with the
        current image's and whose next history entry is this step gives the step's image
        (the source itself at its last entry; else a new image with that entry and layer)."""
        history = list(s.cfg.get("history") or [])
        diff_ids = list((s.cfg.get("rootfs") or {}).get("diff_ids") or [])
        for src in self.sources:
            src_history = list(src.config.get("history") or [])
            src_diffs = list((src.config.get("rootfs") or {}).get("diff_ids") or [])
            if len(src_history) <= len(history) or src_history[: len(history)] != history:
                continue
            if src_diffs[: len(diff_ids)] != diff_ids or src_history[len(history)].get("created_by") != created_by:
                continue
            entry = src_history[len(history)]
            made_layer = not entry.get("empty_layer")
            if made_layer and len(src_diffs) <= len(diff_ids):
                continue
            self.sources = [src]  # dockerd: never jump to another source afterwards
            if len(src_history) == len(history) + 1:
                return src
            if mutate is not None:
                mutate()
            cfg = json.loads(json.dumps(s.cfg))
            cfg["created"] = entry.get("created") or cfg.get("created")
            cfg["history"] = [*history, entry]
            if made_layer:
                diff_ids.append(src_diffs[len(diff_ids)])
            cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            img = await self.b.images.create_image(cfg, parent=s.image_id)
            self.b.cache.record(key, img, created_by=created_by, made_layer=made_layer)
            return img
        return None

    async def _metadata(
        self, s: _StageState, comment: str, mutate: Callable[[], None], *, shell: list[str] | None = None
    ) -> None:
        created_by = " ".join([*(shell or s.shell), "#(nop) ", comment])
        key = cache_key(s.image_id, created_by)
        if await self._cached(s, key, created_by, mutate):
            return  # the cached image already carries the step's config
        mutate()
        image_id = await self._commit(s, created_by, None)
        img = self.b.images.get(image_id)
        self.b.cache.record(key, img, created_by=created_by, made_layer=False)
        await self.emit({"stream": f" ---> {_short(image_id)}\n"})

    # metadata instructions ---------------------------------------------------------------

    async def _do_env(self, s: _StageState, ins: Instruction) -> None:
        pairs = [(self._x(s, k, ins), self._x(s, v, ins)) for k, v in ins.pairs()]

        def apply() -> None:
            env = list(s.config.get("Env") or [])
            for k, v in pairs:
                idx = next((i for i, e in enumerate(env) if e.partition("=")[0] == k), None)
                if idx is None:
                    env.append(f"{k}={v}")
                else:
                    env[idx] = f"{k}={v}"
            s.config["Env"] = env

        await self._metadata(s, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), apply)

    async def _do_label(self, s: _StageState, ins: Instruction) -> None:
        pairs = ins.pairs() if ins.literal else [(self._x(s, k, ins), self._x(s, v, ins)) for k, v in ins.pairs()]

        def apply() -> None:
            labels = dict(s.config.get("Labels") or {})
            labels.update(dict(pairs))
            s.config["Labels"] = labels

        await self._metadata(s, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), apply)

    async def _do_maintainer(self, s: _StageState, ins: Instruction) -> None:
        name = ins.args[0]

        def apply() -> None:
            s.cfg["author"] = name

        await self._metadata(s, "MAINTAINER " + name, apply)

    def _cmd_value(self, s: _StageState, ins: Instruction) -> list[str]:
        if ins.json:
            return list(ins.args)
        if not ins.args:
            return []
        return [*s.shell, ins.args[0]]

    async def _do_cmd(self, s: _StageState, ins: Instruction) -> None:
        cmd = self._cmd_value(s, ins)

        def apply() -> None:
            s.config["Cmd"] = cmd or None

        s.cmd_set = True
        await self._metadata(s, "CMD " + _go_quote_list(cmd), apply)

    async def _do_entrypoint(self, s: _StageState, ins: Instruction) -> None:
        ep = self._cmd_value(s, ins)

        def apply() -> None:
            s.config["Entrypoint"] = ep or None
            if not s.cmd_set:
                s.config["Cmd"] = None

        await self._metadata(s, "ENTRYPOINT " + _go_quote_list(ep), apply)

    async def _do_expose(self, s: _StageState, ins: Instruction) -> None:
        ports: list[str] = []
        words = [self._x(s, w, ins) for w in sorted(ins.args)]  # dockerd's parser sorts them
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

        await self._metadata(s, "EXPOSE " + " ".join(words), apply)

    async def _do_user(self, s: _StageState, ins: Instruction) -> None:
        user = self._x(s, ins.args[0], ins)

        def apply() -> None:
            s.config["User"] = user

        await self._metadata(s, "USER " + user, apply)

    async def _do_volume(self, s: _StageState, ins: Instruction) -> None:
        vols = [self._x(s, v, ins) for v in ins.args]
        for v in vols:
            if not v.strip():
                raise BuildError("VOLUME specified can not be an empty string")

        def apply() -> None:
            cur = dict(s.config.get("Volumes") or {})
            for v in vols:
                cur[v] = {}
            s.config["Volumes"] = cur

        await self._metadata(s, "VOLUME [" + " ".join(vols) + "]", apply)

    async def _do_stopsignal(self, s: _StageState, ins: Instruction) -> None:
        sig = self._x(s, ins.args[0], ins)
        name = sig.upper() if not sig.isdigit() else sig
        if not sig.isdigit():
            try:
                signals.Signals[name if name.startswith("SIG") else "SIG" + name]
            except KeyError:
                raise BuildError(f"Invalid signal: {sig}") from None

        def apply() -> None:
            s.config["StopSignal"] = sig

        await self._metadata(s, "STOPSIGNAL " + sig, apply)

    async def _do_shell(self, s: _StageState, ins: Instruction) -> None:
        sh = list(ins.args)

        def apply() -> None:
            s.config["Shell"] = sh

        await self._metadata(s, "SHELL [" + " ".join(sh) + "]", apply, shell=sh)  # dockerd: the new shell

    async def _do_onbuild(self, s: _StageState, ins: Instruction) -> None:
        trigger = ins.args[0]
        word, _, rest = trigger.partition(" ")
        trigger = word.upper() + (" " + rest if rest else "")

        def apply() -> None:
            s.config["OnBuild"] = list(s.config.get("OnBuild") or []) + [trigger]

        await self._metadata(s, "ONBUILD " + trigger, apply)

    async def _do_healthcheck(self, s: _StageState, ins: Instruction) -> None:
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
                        raise BuildError(f"Interval \"{flag}\" cannot be less than 1ms")
                    if d:
                        hc[key] = d
            r = ins.flag("retries")
            if r:
                if not r.lstrip("-").isdigit() or int(r) < 0:
                    raise BuildError("--retries cannot be negative" if r.lstrip("-").isdigit() else f"invalid retries {r!r}")
                if int(r):
                    hc["Retries"] = int(r)

        def apply() -> None:
            s.config["Healthcheck"] = hc

        await self._metadata(s, "HEALTHCHECK " + _go_healthcheck(hc), apply)

    async def _do_arg(self, s: _StageState, ins: Instruction) -> None:
        decls = []
        for name, default in arg_pairs(ins):
            if name in self.opts.buildargs and self.opts.buildargs[name] is not None:
                value: str | None = self.opts.buildargs[name]
                self.used_args.add(name)
            elif default is not None:
                value = self._x(s, default, ins)
            elif name in self.meta:
                value = self.meta[name]
            else:
                value = None
            if name in self.opts.buildargs:
                self.used_args.add(name)
            decls.append((name, value, default))

        def apply() -> None:
            pass

        for name, value, _ in decls:
            s.args[name] = value
        comment = "ARG " + " ".join(n + (f"={d}" if d is not None else "") for n, _, d in decls)
        await self._metadata(s, comment, apply)

    # RUN ---------------------------------------------------------------------------------

    def _run_args_in_effect(self, s: _StageState) -> list[str]:
        env_keys = {e.partition("=")[0] for e in s.config.get("Env") or []}
        return [f"{k}={v}" for k, v in sorted(s.args.items()) if v is not None and k not in env_keys]

    async def _do_run(self, s: _StageState, ins: Instruction) -> None:
        if ins.json:
            cmd = list(ins.args)
        else:
            text = ins.args[0]
            if ins.heredocs:
                if len(ins.heredocs) == 1 and re.fullmatch(r"<<-?\s*['\"]?\w+['\"]?", text.strip()):
                    text = ins.heredocs[0].content
                else:
                    text = text + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
            cmd = [*s.shell, text]
        args = self._run_args_in_effect(s)
        created_by = (f"|{len(args)} {' '.join(args)} " if args else "") + " ".join(cmd)
        key = cache_key(s.image_id, created_by, extra=json.dumps(s.config.get("Env") or []))
        if await self._cached(s, key, created_by):
            return
        if not s.image_id:
            await self._base_image(s)
        body: dict[str, Any] = {
            "Image": s.image_id,
            "Cmd": cmd,
            "Entrypoint": [""],
            "Env": list(s.config.get("Env") or []) + args,
            "WorkingDir": s.config.get("WorkingDir") or "",
            "User": s.config.get("User") or "",
            "AttachStdout": True,
            "AttachStderr": True,
            "Labels": {},
            "HostConfig": self._host_config(),
        }
        cid, _ = await self.b.containers.create(body, None)
        mark = self.b.running_marks / cid  # a daemon that dies mid-step leaves it for the next one
        mark.touch()
        remove = self.opts.rm or self.opts.forcerm
        try:
            await self.emit({"stream": f" ---> Running in {cid[:12]}\n"})
            code = await self._run_container(cid)
            if code != 0:
                raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            cfg_before = s.cfg
            image_id = await self._commit(s, created_by, self.b.images.upper_dir(cid))
            made_layer = len(s.cfg["rootfs"]["diff_ids"]) > len(cfg_before["rootfs"]["diff_ids"])
            self.b.cache.record(key, self.b.images.get(image_id), created_by=created_by, made_layer=made_layer)
        finally:
            if remove:
                await asyncio.shield(self._remove_container(cid))
            mark.unlink(missing_ok=True)
        if remove:
            await self.emit({"stream": f"Removing intermediate container {cid[:12]}\n"})
        await self.emit({"stream": f" ---> {_short(s.image_id)}\n"})

    def _host_config(self) -> dict[str, Any]:
        o = self.opts
        mode = o.networkmode if o.networkmode and o.networkmode != "default" else "bridge"
        hc: dict[str, Any] = {"NetworkMode": mode}
        if o.extrahosts:
            hc["ExtraHosts"] = list(o.extrahosts)
        for key, val in (("ShmSize", o.shmsize), ("Memory", o.memory), ("MemorySwap", o.memswap),
                         ("CpuShares", o.cpushares), ("CpusetCpus", o.cpusetcpus), ("CpuPeriod", o.cpuperiod),
                         ("CpuQuota", o.cpuquota)):  # fmt: skip
            if val:
                hc[key] = val
        return hc

    async def _remove_container(self, cid: str) -> None:
        try:
            await self.b.containers.remove(cid, force=True)
        except errdefs.NotFound:
            pass
        except Exception:
            log.exception("removing build container %s", cid[:12])

    async def _run_container(self, cid: str) -> int:
        attach = asyncio.ensure_future(self.b.containers.open_attach(cid))
        await asyncio.sleep(0)
        try:
            await self.b.containers.start_container(cid)
        except BaseException:
            attach.cancel()
            with contextlib.suppress(BaseException):
                await attach
            raise
        _rec, conn = await attach
        if conn is not None:
            # one decoder a stream; stderr in red, as dockerd's NewStderrWriter writes it
            decoders = {n: codecs.getincrementaldecoder("utf-8")(errors="replace") for n in (1, 2)}
            fmt = {1: "{}", 2: "\x1b[91m{}\x1b[0m"}
            try:
                while (chunk := await conn.recv()) is not None:
                    n = 2 if chunk[0] == 2 else 1
                    text = decoders[n].decode(chunk[1])
                    if text:
                        await self.emit({"stream": fmt[n].format(text)})
                for n, decoder in decoders.items():
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        await self.emit({"stream": fmt[n].format(tail)})
            finally:
                conn.close()
        rec = await self.b.containers.wait(cid, "not-running")
        return int(rec["State"].get("ExitCode") or 0)

    async def _base_image(self, s: _StageState) -> None:
        """FROM scratch needs an (empty) image before a container or snapshot can use it."""
        img = await self.b.images.create_image(s.cfg, parent="")
        self.made.append(img.id)
        s.image_id = img.id

    # files: WORKDIR, COPY, ADD -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _mounted(self, image_id: str) -> AsyncIterator[tuple[str, Path]]:
        key = "build-" + secrets.token_hex(16)
        target = self.b.tmp / key
        try:
            m = await asyncio.to_thread(self.b.images.prepare_rootfs, key, image_id)
            target.mkdir(parents=True)
            await asyncio.to_thread(sysmount.mount, m, target)
            try:
                yield key, target
            finally:
                await asyncio.to_thread(sysmount.unmount, target)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()

    async def _with_layer(self, s: _StageState, created_by: str, write: Callable[[Path], None]) -> str:
        if not s.image_id:
            await self._base_image(s)
        key = ""
        try:
            async with self._mounted(s.image_id) as (key, root):
                await asyncio.to_thread(write, root)
            return await self._commit(s, created_by, self.b.images.upper_dir(key))
        finally:
            if key:
                await asyncio.to_thread(self.b.images.remove_rootfs, key)

    async def _do_workdir(self, s: _StageState, ins: Instruction) -> None:
        wd = self._x(s, ins.args[0], ins)
        wd = posixpath.normpath(posixpath.join("/", s.config.get("WorkingDir") or "/", wd))
        s.config["WorkingDir"] = wd
        created_by = " ".join([*s.shell, "#(nop) WORKDIR " + wd])  # dockerd's one-word comment
        key = cache_key(s.image_id, created_by)
        if await self._cached(s, key, created_by):
            return

        def write(root: Path) -> None:
            with RootDir(root) as rd:
                try:
                    os.close(rd.open_dir(wd, create=True))
                except OSError as err:
                    raise BuildError(f"failed to create the working directory {wd}: {err.strerror or err}".lower()) from None

        before = len(s.cfg["rootfs"]["diff_ids"])
        image_id = await self._with_layer(s, created_by, write)
        self.b.cache.record(key, self.b.images.get(image_id), created_by=created_by,
                            made_layer=len(s.cfg["rootfs"]["diff_ids"]) > before)  # fmt: skip
        await self.emit({"stream": f" ---> {_short(image_id)}\n"})

    async def _do_copy(self, s: _StageState, ins: Instruction) -> None:
        await self._copy(s, ins, add=False)

    async def _do_add(self, s: _StageState, ins: Instruction) -> None:
        await self._copy(s, ins, add=True)

    async def _copy(self, s: _StageState, ins: Instruction, *, add: bool) -> None:
        words = [self._x(s, w, ins) if not w.startswith("<<") else w for w in ins.args]
        dest = words[-1]
        srcs = words[:-1]
        heredocs = {h.name: h for h in ins.heredocs}
        chown = ins.flag("chown")
        chown = self._x(s, chown, ins) if chown else None
        chmod = ins.flag("chmod")
        mode: int | None = None
        if chmod:
            chmod = self._x(s, chmod, ins)
            try:
                mode = int(chmod, 8)
            except ValueError:
                raise BuildError(f"invalid chmod parameter: {chmod!r}") from None
        from_ref = ins.flag("from")
        from_ref = self._x(s, from_ref, ins) if from_ref else None
        wd = s.config.get("WorkingDir") or "/"
        dest_abs = posixpath.join("/", wd, dest) if not dest.startswith("/") else dest
        dest_is_dir = dest.endswith(("/", "/.")) or dest in (".", "/")

        # Sources: (kind, path-or-bytes, name)
        from_image = ""
        if from_ref:
            idx = self._stage_ref(from_ref, s.stage.index)
            if idx is not None:
                from_image = await self.stage_image(idx)
            else:
                try:
                    from_image = await self._image(from_ref, always_pull=False)
                except BuildError as err:
                    raise BuildError(f"invalid from flag value {from_ref}: {err}") from None
        what = "ADD" if add else "COPY"
        inline: list[tuple[str, bytes]] = []
        ctx_srcs: list[str] = []
        urls: list[str] = []
        for src in srcs:
            if src.startswith("<<"):
                name = src.lstrip("<-").strip("'\"")
                h = heredocs.get(name)
                if h is None:
                    raise BuildError(f"{what} failed: unknown heredoc {name}")
                content = _expand_heredoc(h.content, self._env(s)) if h.expand else h.content
                inline.append((name, content.encode()))
                continue
            if add and re.match(r"^https?://", src):
                urls.append(src)
                continue
            if from_image:
                ctx_srcs.append(src)
                continue
            try:
                matches = self.ctx.glob(src)
            except errdefs.InvalidArgument as err:
                raise BuildError(f"{what} failed: {err}") from None
            if not matches:
                raise BuildError(
                    f"{what} failed: file not found in build context or excluded by .dockerignore: "
                    f"stat {src}: file does not exist"
                )
            ctx_srcs.extend(matches)
        n_sources = len(ctx_srcs) + len(inline) + len(urls)
        if from_image:
            n_sources = len(srcs)
        if (n_sources > 1 or any(c in "".join(srcs) for c in "*?[")) and not dest_is_dir and n_sources != 1:
            raise BuildError(f"When using {what} with more than one source file, the destination must be a directory and end with a /")

        # Cache key: instruction + the sources' content
        if from_image:
            digest = "image:" + from_image + ":" + json.dumps(srcs)
        else:
            digest = await asyncio.to_thread(self.ctx.digest, ctx_srcs)
            if inline:
                digest += ":" + json.dumps([(n, c.decode(errors="replace")) for n, c in inline])
            if urls:
                digest += ":" + json.dumps(urls)
        shown = hashlib.sha256(digest.encode()).hexdigest() if not digest.startswith("sha256:") or inline or urls else digest[7:]
        kind = "dir" if len(ctx_srcs) == 1 and not from_image and self.ctx.is_dir(ctx_srcs[0]) else "file"
        if n_sources > 1:
            kind = "multi"
        # dockerd's comment: the --chown flag (with no space after it), the source hash and the
        # destination as written, in a one-word nop comment
        chown_comment = f"--chown={chown}" if chown else ""

        def created_by_for(kind: str) -> str:
            return " ".join([*s.shell, f"#(nop) {what} {chown_comment}{kind}:{shown} in {dest} "])

        created_by = created_by_for(kind)
        flags_sig = json.dumps([chown, chmod, from_ref])
        key = cache_key(s.image_id, created_by, sources=digest, extra=flags_sig)
        if await self._cached(s, key, created_by):
            return

        preserve_owner = bool(from_image)

        async def run_copy(src_root: Path | None) -> str:
            nonlocal created_by
            if src_root is not None and len(srcs) == 1 and not any(c in srcs[0] for c in "*?["):
                with RootDir(src_root) as src_rd:
                    found = _files.open_source(src_rd, srcs[0])
                    if found is not None:
                        with contextlib.closing(found):
                            if found.is_dir():
                                created_by = created_by_for("dir")

            def write(root: Path) -> None:
                with contextlib.ExitStack() as stack:
                    dst = stack.enter_context(RootDir(root))
                    try:
                        write_in(dst, stack)
                    except _files.StepError as err:
                        raise BuildError(f"{what} failed: {err}") from None

            def write_in(dst: RootDir, stack: contextlib.ExitStack) -> None:
                uid, gid = _resolve_chown(dst, chown) if chown else (0, 0)
                owner = None if (preserve_owner and not chown) else (uid, gid)
                items: list[_files.Source] = []
                if src_root is not None:
                    src_rd = stack.enter_context(RootDir(src_root))
                    for src in ctx_srcs:
                        found = _files.glob_sources(src_rd, src)
                        for f in found:
                            stack.callback(f.close)
                        if not found:
                            raise BuildError(
                                f"{what} failed: stat {src}: file does not exist"
                                if not from_image else f"failed to compute cache key: \"{src}\" not found"
                            )
                        items.extend(found)
                    hidden = None
                else:
                    # the first copy from the context unpacks it; its own symlinks are
                    # followed only inside it, as dockerd's do
                    ctx_rd = stack.enter_context(RootDir(self.ctx.files()))
                    for rel in ctx_srcs:
                        one = _files.open_source(ctx_rd, rel)
                        if one is None:
                            raise BuildError(f"{what} failed: stat {rel}: file does not exist")
                        stack.callback(one.close)
                        items.append(one)
                    hidden = self.ctx.hidden
                multiple = len(items) + len(inline) + len(urls) > 1
                for item in items:
                    if item.is_dir():
                        dfd = _files.dest_dir(dst, dest_abs, owner)
                        try:
                            _files.copy_source(item, dfd, None, owner, mode, hidden)
                        finally:
                            os.close(dfd)
                        continue
                    if add and src_root is None and _add_archive(item, dst, dest_abs):
                        continue
                    dfd, name = _files.dest_slot(dst, dest_abs, dest_is_dir or multiple, posixpath.basename(item.rel), owner)
                    try:
                        _files.copy_source(item, dfd, name, owner, mode, hidden)
                    finally:
                        os.close(dfd)
                for name, content in inline:
                    dfd, name = _files.dest_slot(dst, dest_abs, dest_is_dir or multiple, name, owner)
                    try:
                        _files.write_bytes(dfd, name, content, owner, 0o644 if mode is None else mode)
                    finally:
                        os.close(dfd)
                for url in urls:
                    data, mtime = _download(url)
                    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
                    dfd, name = _files.dest_slot(dst, dest_abs, dest_is_dir or multiple, name, owner)
                    try:
                        _files.write_bytes(dfd, name, data, owner, 0o600 if mode is None else mode, mtime)
                    finally:
                        os.close(dfd)

            return await self._with_layer(s, created_by, write)

        before = len(s.cfg["rootfs"]["diff_ids"])
        if from_image:
            ro_key = ""
            try:
                async with self._mounted(from_image) as (ro_key, src_root):
                    image_id = await run_copy(src_root)
            finally:
                if ro_key:
                    await asyncio.to_thread(self.b.images.remove_rootfs, ro_key)
        else:
            image_id = await run_copy(None)
        self.b.cache.record(key, self.b.images.get(image_id), created_by=created_by,
                            made_layer=len(s.cfg["rootfs"]["diff_ids"]) > before)  # fmt: skip
        await self.emit({"stream": f" ---> {_short(image_id)}\n"})


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _go_frac(ns, size) + unit
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    out = _go_frac(rem, 10**9) + "s"
    if h or m:
        out = f"{m}m" + out
    if h:
        out = f"{h}h" + out
    return sign + out


def _go_frac(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _go_quote_rune(n: int) -> str:
    """Go's %q of an int (a rune literal), as dockerd prints Retries."""
    special = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"}
    if n in special:
        return f"'{special[n]}'"
    if 0x20 <= n < 0x7F or (n >= 0xA0 and chr(n).isprintable()):
        return f"'{chr(n)}'"
    if n < 0x80:
        return f"'\\x{n:02x}'"
    return f"'\\u{n:04x}'" if n <= 0xFFFF else f"'\\U{n:08x}'"


def _go_healthcheck(hc: dict[str, Any]) -> str:
    """`fmt.Sprintf("%q", *container.HealthConfig)`, dockerd's HEALTHCHECK history comment."""
    durations = " ".join(json.dumps(_go_duration(int(hc.get(k) or 0)), ensure_ascii=False)
                         for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"))  # fmt: skip
    return f"&{{{_go_quote_list(hc.get('Test') or [])} {durations} {_go_quote_rune(int(hc.get('Retries') or 0))}}}"


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure to report: a stage's own error rather than another stage's cancellation."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


def _expand_heredoc(content: str, env: dict[str, str]) -> str:
    """Unquoted heredoc bodies expand `$VAR` and `${VAR}` but keep quotes (shell heredoc rules)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, content)


# ---- file helpers (blocking; run in a worker thread) --------------------------------------


def _add_archive(item: _files.Source, dst: RootDir, dest: str) -> bool:
    """ADD of a local (maybe compressed) tar: extracted at dest with ARCHIVE rules (no
    whiteouts, nothing outside dest) rooted at dest's fd. False if item is no archive."""
    f = item.open_regular()
    if f is None:
        return False
    with f:
        if not ctxmod.is_archive(f):
            return False
        f.seek(0)
        # dockerd untars with the archive's owners: --chown touches neither the members
        # nor the directories made for them
        dfd = _files.dest_dir(dst, dest, None)
        try:
            Extractor(None, ARCHIVE, root_fd=dfd).extract(ctxmod.open_maybe_compressed(f))
        except UnsafeArchive as err:
            raise BuildError(f"ADD failed: extracting {item.name}: member {err.name!r}: {err.reason}") from None
        except (tarfile.TarError, OSError, EOFError) as err:
            raise BuildError(f"ADD failed: extracting {item.name}: {err}") from None
        finally:
            os.close(dfd)
    return True


def _id_of(text: str | None, name: str, field: int = 2) -> int | None:
    """The numeric field of `name`'s line in a passwd/group file's text."""
    for line in (text or "").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) > field:
            try:
                return int(fields[field])
            except ValueError:
                return None
    return None


def _resolve_chown(root: RootDir, spec: str) -> tuple[int, int]:
    """--chown's user and group, named ones looked up in the rootfs's own /etc files (read
    in the root, regular files only)."""
    user, _, group = spec.partition(":")
    passwd = _files.read_text(root, "/etc/passwd") if not user.isdigit() else None
    if user.isdigit():
        uid = int(user)
    else:
        found = _id_of(passwd, user)
        if found is None:
            raise BuildError(f"unable to convert uid/gid chown string to host mapping: can't find uid for user {user}: no such user: {user}")
        uid = found
    if not group:
        gid = uid
        if not user.isdigit():
            gid = _id_of(passwd, user, 3) or gid
    elif group.isdigit():
        gid = int(group)
    else:
        found = _id_of(_files.read_text(root, "/etc/group"), group)
        if found is None:
            raise BuildError(f"unable to convert uid/gid chown string to host mapping: can't find gid for group {group}: no such group: {group}")
        gid = found
    return uid, gid


def _download(url: str) -> tuple[bytes, float | None]:
    """ADD of a URL: its bytes and Last-Modified time."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data = resp.read()
            modified = resp.headers.get("Last-Modified")
    except OSError as err:
        raise BuildError(f"ADD failed: downloading {url}: {err}") from None
    mtime: float | None = None
    if modified:
        with contextlib.suppress(TypeError, ValueError, OSError):
            mtime = parsedate_to_datetime(modified).timestamp()
    return data, mtime
