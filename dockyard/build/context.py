"""The build context: a tar stream (plain, gzip, bzip2 or xz) unpacked into a directory,
`.dockerignore` applied, and sources of COPY/ADD resolved and hashed.

`.dockerignore` follows moby's `patternmatcher`: each line is a `filepath.Match` glob over
the cleaned, slash-separated path relative to the context root, `**` matches any number
of directories, a leading `!` re-includes, the last matching line wins, and a pattern
also excludes everything below a matching directory. The docker CLI applies it before
sending; `dockyard build` and `remote` contexts rely on the daemon applying it again.
Extraction never writes outside the context directory.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import stat
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from dockyard._sys.fs import RootPathError, resolve_in_root
from dockyard.build.tarindex import Index, TarIndexer, content_hasher
from dockyard.errdefs import InvalidArgument
from dockyard.images.unpack import CONTEXT, Extractor, UnsafeArchive

__all__ = [
    "Context", "IgnoreMatcher", "Opener", "context_texts", "extract_context", "index_tarball",
    "open_maybe_compressed", "parse_dockerignore",
]  # fmt: skip


def open_maybe_compressed(f: BinaryIO) -> BinaryIO:
    head = f.read(6)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    return f


def is_archive(f: BinaryIO) -> bool:
    """ADD's test: is the open file a (possibly compressed) tar archive? Reads its start."""
    try:
        src = open_maybe_compressed(f)
        with tarfile.open(fileobj=src, mode="r|") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError):
        return False


# ---- .dockerignore ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool
    dirs: tuple[str, ...]


def _glob_to_regex(pattern: str) -> str:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith(("^", "!")):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def parse_dockerignore(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        p = line.strip()
        if not p:
            continue
        excl = p.startswith("!")
        if excl:
            p = p[1:].strip()
        if p:
            p = posixpath.normpath(p.replace("\\", "/")).lstrip("/") or "."
            p = p.removeprefix("../")
        out.append(("!" if excl else "") + p)
    return out


class IgnoreMatcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            excl = p.startswith("!")
            body = p[1:] if excl else p
            if body in (".", ""):
                body = "**"
            self.patterns.append(_Pattern(re.compile(_glob_to_regex(body)), excl, tuple(body.split("/"))))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, rel: str) -> bool:
        """Is the slash-separated path `rel` excluded? (moby MatchesOrParentMatches)"""
        rel = posixpath.normpath(rel).lstrip("/")
        parents = rel.split("/")
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # only a pattern that could flip the result matters
            hit = bool(p.regex.match(rel))
            if not hit:
                for n in range(1, len(parents)):
                    if p.regex.match("/".join(parents[:n])):
                        hit = True
                        break
            if hit:
                matched = not p.exclusion
        return matched

    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)


# ---- the context directory ------------------------------------------------------------


class _BlockPadded:
    """A tar stream read to its end, then zeros up to the next 512-byte block: the docker
    CLI may end a context right after the last member's data (see tarindex), which tarfile,
    unlike Go's reader, calls "unexpected end of data" (an end at a block boundary it takes
    as the end of the archive)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._size = 0
        self._tail: bytes | None = None

    def read(self, n: int = -1) -> bytes:
        if self._tail is None:
            data = self._f.read(n)
            if data:
                self._size += len(data)
                return data
            self._tail = bytes(-self._size % 512)
        out = self._tail if n < 0 else self._tail[:n]
        self._tail = self._tail[len(out) :]
        return out


def extract_context(f: BinaryIO, dest: Path, *, pad_end: bool = False) -> dict[str, str]:
    """Blocking: unpack the (maybe compressed) context tar into dest; returns the content
    digest of each regular file by its path in the context. `pad_end`: the archive is known
    to end at a member's end (`TarIndexer.ends_at_a_member`), so missing padding is added."""
    dest.mkdir(parents=True, exist_ok=True)
    src = open_maybe_compressed(f)
    if pad_end:
        src = cast(BinaryIO, _BlockPadded(src))
    # the layer extractor's walk (never follows a link, refuses entries that leave dest),
    # with the context's rules: no whiteouts, no devices or fifos, digests while writing
    extractor = Extractor(dest, CONTEXT, hasher=content_hasher)
    try:
        return extractor.extract(src).digests
    except UnsafeArchive as err:
        raise InvalidArgument(f"invalid build context: member {err.name!r}: {err.reason}") from None
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as err:
        if isinstance(err, tarfile.ReadError) and "empty" in str(err):
            return {}
        raise InvalidArgument(f"failed to read the build context: {err}") from None


Opener = Callable[[], BinaryIO]  # opens the context tarball, from its start, each call


def index_tarball(opener: Opener, keep_text: set[str]) -> TarIndexer:
    """Blocking: a spooled (maybe compressed) context walked by a TarIndexer: its `finish()`
    is the index (or None), `ends_at_a_member` says whether unpacking may pad the end."""
    ix = TarIndexer(keep_text)
    with opener() as f:
        src = open_maybe_compressed(f)
        try:
            while chunk := src.read(1 << 20):
                ix.feed(chunk)
        except (OSError, EOFError, lzma.LZMAError):
            ix.fail()  # unpacking will word the error
    return ix


def context_texts(dockerfile: str) -> set[str]:
    """The members whose text an index keeps: the Dockerfile (and the CLI's lower-case
    fallback name) and `.dockerignore`."""
    return {".dockerignore", posixpath.normpath("/" + (dockerfile or "Dockerfile")).lstrip("/"), "dockerfile"}


class Context:
    """The build context with its `.dockerignore`: an unpacked directory, or a tarball that
    is read in place and unpacked only when a step really copies from it (`files()`), so a
    fully cached build writes nothing."""

    def __init__(self, root: Path, dockerfile: str = "Dockerfile", file_digests: dict[str, str] | None = None) -> None:
        self.root = root
        self.dockerfile = dockerfile
        self.file_digests = file_digests or {}  # content digests of files, taken while unpacking
        self._index: Index | None = None
        self._tarball: Opener | None = None
        self._unpack_lock = threading.Lock()
        text = read_regular_in(root, ".dockerignore", _MAX_IGNORE)
        self.ignore = IgnoreMatcher(parse_dockerignore(text.decode(errors="replace")) if text is not None else [])

    @classmethod
    def from_tarball(
        cls, opener: Opener, root: Path, dockerfile: str = "Dockerfile", index: Index | None = None
    ) -> Context:
        """Blocking. `opener` must work until the build ends; `root` is where files go if
        needed; `index` is the tarball's, when it was made while the upload arrived."""
        if index is None:
            walked = index_tarball(opener, context_texts(dockerfile))
            index = walked.finish()
            if index is None:
                with opener() as f:
                    return cls(root, dockerfile, extract_context(f, root, pad_end=walked.ends_at_a_member))
        ctx = cls.__new__(cls)
        ctx.root, ctx.dockerfile, ctx.file_digests = root, dockerfile, {}
        ctx._index, ctx._tarball, ctx._unpack_lock = index, opener, threading.Lock()
        text = index.texts.get(".dockerignore")
        ctx.ignore = IgnoreMatcher(parse_dockerignore(text.decode(errors="replace")) if text is not None else [])
        return ctx

    def files(self) -> Path:
        """Blocking: the context as a directory, unpacked on first use."""
        with self._unpack_lock:
            if self._index is not None and self._tarball is not None:
                with self._tarball() as f:
                    self.file_digests = extract_context(f, self.root, pad_end=True)  # indexed: it ends well
                self._index = None
        return self.root

    def is_dir(self, rel: str) -> bool:
        if self._index is not None:
            e = self._index.entries.get(posixpath.normpath(rel))
            return bool(e and e.is_dir)
        return (self.root / rel).is_dir()

    def dockerfile_bytes(self) -> bytes:
        name = self.dockerfile or "Dockerfile"
        if self._index is not None:
            texts = self._index.texts
            key = posixpath.normpath("/" + name).lstrip("/")
            if key in texts:
                return texts[key]
            if name == "Dockerfile" and "dockerfile" in texts:  # the CLI's lower-case fallback
                return texts["dockerfile"]
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        path = self.resolve(name, what="Dockerfile")
        if not path.is_file():
            # the CLI's lower-case fallback
            alt = self.root / "dockerfile"
            if name == "Dockerfile" and alt.is_file():
                return alt.read_bytes()
            raise InvalidArgument(
                f"Cannot locate specified Dockerfile: {name}"
            )
        return path.read_bytes()

    def resolve(self, rel: str, what: str = "source") -> Path:
        clean = posixpath.normpath("/" + rel.replace("\\", "/"))
        p = self.root / clean.lstrip("/")
        real = os.path.realpath(p)
        root = os.path.realpath(self.root)
        if not (real == root or real.startswith(root + os.sep)):
            raise InvalidArgument(f"forbidden path outside the build context: {rel} ()")
        return p

    def excluded(self, rel: str) -> bool:
        """Does .dockerignore exclude `rel`? (It may name itself and the Dockerfile: the
        client still sends both, and the daemon reads the Dockerfile, then drops them.)"""
        rel = posixpath.normpath(rel).lstrip("/")
        return bool(self.ignore) and self.ignore.matches(rel)

    def hidden(self, rel: str) -> bool:
        """Is `rel` left out of a copy of the context (and of its digest)? An excluded
        directory still shows when an exception (`!dir/keep`) re-includes something below
        it, as the docker CLI sends such a file with its parents."""
        if not self.excluded(rel):
            return False
        if not self.ignore.has_exclusions() or not self.is_dir(rel):
            return True
        rel = posixpath.normpath(rel).lstrip("/")
        if self._index is not None:
            below = (r for r in self._index.entries if r.startswith(rel + "/"))
        else:
            below = (
                os.path.relpath(os.path.join(d, n), self.root).replace(os.sep, "/")
                for d, dirs, files in os.walk(self.root / rel) for n in dirs + files
            )  # fmt: skip
        return all(self.excluded(r) for r in below)

    def glob(self, pattern: str) -> list[str]:
        """Context-relative paths matching a COPY source (wildcards allowed), ignore applied."""
        if pattern.startswith("../") or pattern == ".." or "/../" in pattern:
            clean = posixpath.normpath(pattern)
            if clean.startswith(".."):
                raise InvalidArgument(f"forbidden path outside the build context: {pattern} ()")
        clean = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if self._index is not None:
            return self._glob_index(clean)
        if not any(c in clean for c in "*?["):
            p = self.resolve(clean)
            if not os.path.lexists(p) or (clean != "." and self.hidden(clean)):
                return []
            return [clean]
        out = []
        parts = clean.split("/")
        base = []
        for part in parts:
            if any(c in part for c in "*?["):
                break
            base.append(part)
        start = self.root.joinpath(*base) if base else self.root
        for dirpath, dirnames, filenames in os.walk(start):
            for n in dirnames + filenames:
                full = os.path.join(dirpath, n)
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                if fnmatch.fnmatchcase(rel, clean) and _segments_equal(rel, clean) and not self.hidden(rel):
                    out.append(rel)
        return sorted(out)

    def _glob_index(self, clean: str) -> list[str]:
        entries = self._index.entries if self._index is not None else {}
        if not any(c in clean for c in "*?["):
            if clean not in entries or (clean != "." and self.hidden(clean)):
                return []
            return [clean]
        return sorted(
            rel for rel in entries
            if rel != "." and fnmatch.fnmatchcase(rel, clean) and _segments_equal(rel, clean) and not self.hidden(rel)
        )  # fmt: skip

    def digest(self, rels: list[str]) -> str:
        """Content digest of sources: names, modes, link targets and bytes (not mtimes)."""
        h = hashlib.sha256()
        for rel in rels:
            if self._index is not None:
                self._hash_index(h, posixpath.normpath(rel))
            else:
                _hash_tree(h, self.root, rel, self)
        return "sha256:" + h.hexdigest()

    def _hash_index(self, h: hashlib._Hash, rel: str) -> None:
        """What _hash_tree computes over the unpacked directory, from the index."""
        assert self._index is not None
        e = self._index.entries[rel]
        h.update(f"{rel}\0{e.mode:o}\0{e.uid}:{e.gid}\0".encode())
        if e.is_dir:
            h.update(b"D")
            for name in sorted(self._index.children.get(rel, [])):
                child = f"{rel}/{name}" if rel != "." else name
                if not self.hidden(child):
                    self._hash_index(h, child)
        else:
            h.update(b"F" + e.digest.encode())
        h.update(b"\0")


_MAX_IGNORE = 1 << 20  # a .dockerignore larger than this is refused


def read_regular_in(root: Path, rel: str, limit: int) -> bytes | None:
    """The bytes of the regular file `rel` names in the directory `root`, its symlinks
    followed only inside root (as a chroot would), the last one opened with O_NOFOLLOW;
    None if it is missing or not a regular file (a fifo or device is never opened to read)."""
    try:
        path = resolve_in_root(root, rel)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (RootPathError, OSError):
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{rel} is larger than {limit} bytes")
    return data


def _segments_equal(rel: str, pattern: str) -> bool:
    return rel.count("/") == pattern.count("/")


def _hash_tree(h: hashlib._Hash, root: Path, rel: str, ctx: Context | None) -> None:
    path = root / rel if rel != "." else root
    st = os.lstat(path)
    h.update(f"{rel}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}:{st.st_gid}\0".encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(b"L" + os.readlink(path).encode())
    elif stat.S_ISREG(st.st_mode):
        known = ctx.file_digests.get(rel) if ctx is not None else None
        h.update(b"F" + (known or _file_digest(path)).encode())
    elif stat.S_ISDIR(st.st_mode):
        h.update(b"D")
        for name in sorted(os.listdir(path)):
            child = f"{rel}/{name}" if rel != "." else name
            if ctx is not None and ctx.hidden(child):
                continue
            _hash_tree(h, root, child, ctx)
    h.update(b"\0")


def _file_digest(path: Path) -> str:
    h = content_hasher()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """Content digest of a file or directory outside a context (a stage's or image's files)."""
    h = hashlib.sha256()
    _hash_tree(h, path.parent, path.name, None)
    return "sha256:" + h.hexdigest()
