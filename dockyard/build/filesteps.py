"""The executors of the instructions that write files: WORKDIR, COPY and ADD.

Owns what they do to a stage's rootfs: a snapshot of the current image is mounted under
the build's mounts folder, written into by file descriptor (`_files.py` over
`_sys/rootdir.py`: ownership, `--chmod`, wildcards, directories, ADD's tar extraction and
URLs, heredocs, `COPY --from` a stage or an image) and committed as a layer. Also owns
their cache keys (the sources' content digests) and history comments (dockerd's
`file:`/`dir:`/`multi:` words).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import posixpath
import re
import secrets
import tarfile
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path

from dockyard import errdefs
from dockyard._sys import mount as sysmount
from dockyard._sys.rootdir import RootDir
from dockyard.build import _files, _owners, progress
from dockyard.build import context as ctxmod
from dockyard.build.cache import cache_key
from dockyard.build.cachelookup import cached
from dockyard.build.dockerfile import Instruction
from dockyard.build.imageconfig import StageState
from dockyard.build.model import BuildError
from dockyard.build.session import BuildSession, Executor
from dockyard.idmap import IdentityMapping
from dockyard.images.unpack import ARCHIVE, Extractor, UnmappableOwner, UnsafeArchive

__all__ = ["EXECUTORS"]


@contextlib.asynccontextmanager
async def _mounted(b: BuildSession, image_id: str) -> AsyncIterator[tuple[str, Path]]:
    key = "build-" + secrets.token_hex(16)
    target = b.svc.mounts / key
    try:
        m = await asyncio.to_thread(b.svc.images.prepare_rootfs, key, image_id)
        target.mkdir(parents=True)
        await asyncio.to_thread(sysmount.mount, m, target)
        try:
            yield key, target
        finally:
            await asyncio.to_thread(sysmount.unmount, target)
    finally:
        with contextlib.suppress(OSError):
            target.rmdir()


async def _with_layer(b: BuildSession, s: StageState, created_by: str, write: Callable[[Path], None]) -> str:
    if not s.image_id:
        await b.base_image(s)
    key = ""
    try:
        async with _mounted(b, s.image_id) as (key, root):
            await asyncio.to_thread(write, root)
        return await b.commit(s, created_by, b.svc.images.upper_dir(key))
    finally:
        if key:
            await asyncio.to_thread(b.svc.images.remove_rootfs, key)


async def do_workdir(b: BuildSession, s: StageState, ins: Instruction) -> None:
    wd = b.x(s, ins.args[0], ins)
    wd = posixpath.normpath(posixpath.join("/", s.config.get("WorkingDir") or "/", wd))
    s.config["WorkingDir"] = wd
    created_by = " ".join([*s.shell, "#(nop) WORKDIR " + wd])  # dockerd's one-word comment
    key = cache_key(s.image_id, created_by)
    if await cached(b, s, key, created_by):
        return

    idmap = b.svc.images.id_mapping

    def write(root: Path) -> None:
        with RootDir(root) as rd:
            try:
                os.close(rd.open_dir(wd, create=True, owner=idmap.root_pair if idmap else None))
            except OSError as err:
                raise BuildError(
                    f"failed to create the working directory {wd}: {err.strerror or err}".lower()
                ) from None

    before = s.layers
    image_id = await _with_layer(b, s, created_by, write)
    b.record(key, s, created_by=created_by, layers_before=before)
    await b.emit(progress.StepImage(image_id))


async def do_copy(b: BuildSession, s: StageState, ins: Instruction) -> None:
    await _copy(b, s, ins, add=False)


async def do_add(b: BuildSession, s: StageState, ins: Instruction) -> None:
    await _copy(b, s, ins, add=True)


async def _copy(b: BuildSession, s: StageState, ins: Instruction, *, add: bool) -> None:
    words = [b.x(s, w, ins) if not w.startswith("<<") else w for w in ins.args]
    dest = words[-1]
    srcs = words[:-1]
    heredocs = {h.name: h for h in ins.heredocs}
    chown = ins.flag("chown")
    chown = b.x(s, chown, ins) if chown else None
    chmod = ins.flag("chmod")
    mode: int | None = None
    if chmod:
        chmod = b.x(s, chmod, ins)
        try:
            mode = int(chmod, 8)
        except ValueError:
            raise BuildError(f"invalid chmod parameter: {chmod!r}") from None
    from_ref = ins.flag("from")
    from_ref = b.x(s, from_ref, ins) if from_ref else None
    wd = s.config.get("WorkingDir") or "/"
    dest_abs = posixpath.join("/", wd, dest) if not dest.startswith("/") else dest
    dest_is_dir = dest.endswith(("/", "/.")) or dest in (".", "/")

    # Sources: (kind, path-or-bytes, name)
    from_image = ""
    if from_ref:
        idx = b.stage_ref(from_ref, s.stage.index)
        if idx is not None:
            from_image = await b.stage_image(idx)
        else:
            try:
                from_image = await b.image(from_ref, always_pull=False)
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
            content = _expand_heredoc(h.content, s.variables()) if h.expand else h.content
            inline.append((name, content.encode()))
            continue
        if add and re.match(r"^https?://", src):
            urls.append(src)
            continue
        if from_image:
            ctx_srcs.append(src)
            continue
        try:
            matches = b.ctx.glob(src)
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
        raise BuildError(
            f"When using {what} with more than one source file, the destination must be a directory and end with a /"
        )

    # Cache key: instruction + the sources' content
    if from_image:
        digest = "image:" + from_image + ":" + json.dumps(srcs)
    else:
        digest = await asyncio.to_thread(b.ctx.digest, ctx_srcs)
        if inline:
            digest += ":" + json.dumps([(n, c.decode(errors="replace")) for n, c in inline])
        if urls:
            digest += ":" + json.dumps(urls)
    shown = (
        hashlib.sha256(digest.encode()).hexdigest()
        if not digest.startswith("sha256:") or inline or urls
        else digest[7:]
    )
    kind = "dir" if len(ctx_srcs) == 1 and not from_image and b.ctx.is_dir(ctx_srcs[0]) else "file"
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
    if await cached(b, s, key, created_by):
        return

    preserve_owner = bool(from_image)
    idmap = b.svc.images.id_mapping

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
            uid, gid = _owners.resolve_chown(dst, chown) if chown else (0, 0)
            # a --from source keeps its owners: its rootfs already holds this daemon's
            # host ids; anything else is written with the host ids of (uid, gid)
            owner = None if (preserve_owner and not chown) else _owners.host_owner(idmap, uid, gid, chown)
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
                            if not from_image
                            else f'failed to compute cache key: "{src}" not found'
                        )
                    items.extend(found)
                hidden = None
            else:
                # the first copy from the context unpacks it; its own symlinks are
                # followed only inside it, as dockerd's do
                ctx_rd = stack.enter_context(RootDir(b.ctx.files()))
                for rel in ctx_srcs:
                    one = _files.open_source(ctx_rd, rel)
                    if one is None:
                        raise BuildError(f"{what} failed: stat {rel}: file does not exist")
                    stack.callback(one.close)
                    items.append(one)
                hidden = b.ctx.hidden
            multiple = len(items) + len(inline) + len(urls) > 1
            for item in items:
                if item.is_dir():
                    dfd = _files.dest_dir(dst, dest_abs, owner)
                    try:
                        _files.copy_source(item, dfd, None, owner, mode, hidden)
                    finally:
                        os.close(dfd)
                    continue
                if add and src_root is None and _add_archive(item, dst, dest_abs, idmap):
                    continue
                dfd, name = _files.dest_slot(
                    dst, dest_abs, dest_is_dir or multiple, posixpath.basename(item.rel), owner
                )
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

        return await _with_layer(b, s, created_by, write)

    before = s.layers
    if from_image:
        ro_key = ""
        try:
            async with _mounted(b, from_image) as (ro_key, src_root):
                image_id = await run_copy(src_root)
        finally:
            if ro_key:
                await asyncio.to_thread(b.svc.images.remove_rootfs, ro_key)
    else:
        image_id = await run_copy(None)
    b.record(key, s, created_by=created_by, layers_before=before)
    await b.emit(progress.StepImage(image_id))


def _expand_heredoc(content: str, env: dict[str, str]) -> str:
    """Unquoted heredoc bodies expand `$VAR` and `${VAR}` but keep quotes (shell heredoc rules)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, content)


# ---- blocking helpers (run in a worker thread) -------------------------------------------


def _add_archive(item: _files.Source, dst: RootDir, dest: str, idmap: IdentityMapping | None = None) -> bool:
    """ADD of a local (maybe compressed) tar: extracted at dest with ARCHIVE rules (no
    whiteouts, nothing outside dest) rooted at dest's fd, its owners shifted by `idmap` on
    a remapped daemon. False if item is no archive."""
    f = item.open_regular()
    if f is None:
        return False
    with f:
        if not ctxmod.is_archive(f):
            return False
        f.seek(0)
        # dockerd untars with the archive's owners: --chown touches neither the members
        # nor the directories made for them (those are the container root's)
        dfd = _files.dest_dir(dst, dest, idmap.root_pair if idmap else None)
        try:
            Extractor(None, ARCHIVE, root_fd=dfd, id_mapping=idmap).extract(ctxmod.open_maybe_compressed(f))
        except UnmappableOwner as err:
            raise BuildError(f"ADD failed: extracting {item.name}: {err}") from None
        except UnsafeArchive as err:
            raise BuildError(
                f"ADD failed: extracting {item.name}: member {err.name!r}: {err.reason}"
            ) from None
        except (tarfile.TarError, OSError, EOFError) as err:
            raise BuildError(f"ADD failed: extracting {item.name}: {err}") from None
        finally:
            os.close(dfd)
    return True


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


EXECUTORS: dict[str, Executor] = {"WORKDIR": do_workdir, "COPY": do_copy, "ADD": do_add}
