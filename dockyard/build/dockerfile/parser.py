"""Dockerfile parser (sans-IO): logical lines into instructions, grouped into stages.

Each instruction keeps its original text (for history and the cache key), its `--flags`,
and its arguments as Docker's per-instruction line parsers split them: JSON (exec) form
or shell form for RUN/CMD/ENTRYPOINT, name=value pairs for ENV/LABEL, whitespace-split
words for the rest. Variable expansion is *not* done here: it depends on the build
arguments and the ENV in effect, which only the builder knows (`expand_*` helpers below
do it when asked). Errors name the line, like moby's "dockerfile parse error on line N".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.build.dockerfile.lexer import Heredoc, LogicalLine, ParseError, lex
from dockyard.build.dockerfile.shell import ExpansionError, process_word, split_words

__all__ = ["INSTRUCTIONS", "Dockerfile", "Instruction", "Stage", "parse"]

INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip

_FLAGS: dict[str, tuple[str, ...]] = {
    "FROM": ("platform",),
    "RUN": ("mount", "network", "security"),
    "COPY": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "ADD": ("chown", "chmod", "link", "keep-git-dir", "checksum", "exclude"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_BOOL_FLAGS = ("link", "parents", "keep-git-dir")


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case: "RUN"
    line: int
    original: str  # the instruction as written (continuations joined)
    args: tuple[str, ...] = ()  # words; for the shell form of RUN/CMD/ENTRYPOINT one string
    json: bool = False  # exec form
    flags: tuple[tuple[str, str], ...] = ()
    heredocs: tuple[Heredoc, ...] = ()
    sub: Instruction | None = None  # ONBUILD's trigger
    literal: bool = False  # args are taken as they are, not expanded (a `--label` option's LABEL)

    def flag(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.flags:
            if k == name:
                return v
        return default

    def flag_list(self, name: str) -> list[str]:
        return [v for k, v in self.flags if k == name]

    def pairs(self) -> list[tuple[str, str]]:
        """ENV/LABEL arguments as (name, raw value) pairs (values still to expand)."""
        return [(self.args[i], self.args[i + 1]) for i in range(0, len(self.args), 2)]


@dataclass
class Stage:
    index: int
    name: str  # lower-cased AS name, or ""
    base: str  # raw (unexpanded) image reference
    platform: str
    line: int
    original: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    directives: dict[str, str]
    escape: str
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def stage_index(self, ref: str) -> int | None:
        """A stage named `ref` (case-insensitive) or numbered `ref`."""
        low = ref.lower()
        for st in self.stages:
            if st.name and st.name == low:
                return st.index
        if ref.isdigit() and int(ref) < len(self.stages):
            return int(ref)
        return None


def _split_flags(cmd: str, rest: str, line: int) -> tuple[list[tuple[str, str]], str]:
    flags: list[tuple[str, str]] = []
    allowed = _FLAGS.get(cmd, ())
    while rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise ParseError(line, f"unknown flag: {name}" if allowed else f"{cmd} does not support the flag --{name}")
        if not eq:
            if name not in _BOOL_FLAGS:
                raise ParseError(line, f"missing a value on flag: {name}")
            value = "true"
        flags.append((name, value))
        rest = tail.lstrip()
    return flags, rest


def _maybe_json(rest: str) -> list[str] | None:
    s = rest.strip()
    if not s.startswith("["):
        return None
    try:
        val = json.loads(s)
    except json.JSONDecodeError:
        return None
    if isinstance(val, list) and all(isinstance(x, str) for x in val):
        return val
    return None


def _name_vals(cmd: str, rest: str, line: int, escape: str) -> list[str]:
    words = split_words(rest, escape)
    if not words:
        raise ParseError(line, f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        # legacy `ENV name value with spaces`
        parts = rest.split(None, 1)
        if len(parts) < 2:
            if cmd == "LABEL":
                raise ParseError(line, "LABEL requires at least one argument")
            raise ParseError(line, f"{cmd} must have two arguments")
        return [parts[0], parts[1].strip()]
    out: list[str] = []
    for w in words:
        name, eq, value = w.partition("=")
        if not eq:
            raise ParseError(line, f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        if not name:
            raise ParseError(line, f"{cmd} names can not be blank")
        out += [name, value]
    return out


def _instruction(ll: LogicalLine, escape: str, *, text: str | None = None) -> Instruction:
    text = ll.text if text is None else text
    word, _, rest = text.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = more + " " + rest
    cmd = word.upper()
    rest = rest.strip()
    line = ll.start
    if cmd not in INSTRUCTIONS:
        raise ParseError(line, f"unknown instruction: {word}")
    flags, rest = _split_flags(cmd, rest, line)
    base = {"cmd": cmd, "line": line, "original": text, "flags": tuple(flags), "heredocs": ll.heredocs}

    if cmd in ("RUN", "CMD", "ENTRYPOINT"):
        j = _maybe_json(rest)
        if j is not None:
            return Instruction(args=tuple(j), json=True, **base)  # type: ignore[arg-type]
        if not rest and cmd == "RUN":
            raise ParseError(line, "RUN requires at least one argument")
        return Instruction(args=(rest,) if rest else (), **base)  # type: ignore[arg-type]
    if cmd == "SHELL":
        j = _maybe_json(rest)
        if j is None:
            raise ParseError(line, "SHELL requires the arguments to be in JSON form")
        if not j:
            raise ParseError(line, "SHELL requires at least one argument")
        return Instruction(args=tuple(j), json=True, **base)  # type: ignore[arg-type]
    if cmd in ("ENV", "LABEL"):
        return Instruction(args=tuple(_name_vals(cmd, rest, line, escape)), **base)  # type: ignore[arg-type]
    if cmd in ("COPY", "ADD", "VOLUME"):
        j = _maybe_json(rest)
        args = j if j is not None else rest.split()
        if cmd == "VOLUME":
            if not args:
                raise ParseError(line, "VOLUME requires at least one argument")
        elif len(args) + len(ll.heredocs) - sum(1 for a in args if a.startswith("<<")) < 2:
            raise ParseError(line, f"{cmd} requires at least two arguments, but only one was provided. Destination could not be determined.")
        return Instruction(args=tuple(args), json=j is not None, **base)  # type: ignore[arg-type]
    if cmd == "ONBUILD":
        if not rest:
            raise ParseError(line, "ONBUILD requires at least one argument")
        sub_word = rest.split(None, 1)[0].upper()
        if sub_word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ParseError(line, f"{sub_word} isn't allowed as an ONBUILD trigger")
        sub = _instruction(LogicalLine(ll.start, ll.end, rest, ll.heredocs), escape)
        return Instruction(args=(rest,), sub=sub, **base)  # type: ignore[arg-type]
    if cmd == "HEALTHCHECK":
        kind, _, tail = rest.partition(" ")
        kind = kind.upper()
        if kind == "NONE":
            if tail.strip() or flags:
                raise ParseError(line, "HEALTHCHECK NONE takes no arguments")
            return Instruction(args=("NONE",), **base)  # type: ignore[arg-type]
        if kind != "CMD":
            raise ParseError(line, "Unknown type \"" + kind + "\" in HEALTHCHECK (try CMD)")
        j = _maybe_json(tail)
        if j is not None:
            return Instruction(args=("CMD", *j), json=True, **base)  # type: ignore[arg-type]
        if not tail.strip():
            raise ParseError(line, "Missing command after HEALTHCHECK CMD")
        return Instruction(args=("CMD-SHELL", tail.strip()), **base)  # type: ignore[arg-type]
    words = rest.split()
    if cmd == "FROM":
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise ParseError(line, "FROM requires either one or three arguments")
    elif cmd in ("MAINTAINER", "STOPSIGNAL", "USER", "WORKDIR"):
        if not rest:
            raise ParseError(line, f"{cmd} requires exactly one argument")
        if cmd in ("STOPSIGNAL", "USER") and len(words) != 1:
            raise ParseError(line, f"{cmd} requires exactly one argument")
        words = [rest]
    elif cmd == "ARG":
        if not words:
            raise ParseError(line, "ARG requires at least one argument")
        words = split_words(rest, escape)
    elif cmd == "EXPOSE" and not words:
        raise ParseError(line, "EXPOSE requires at least one argument")
    return Instruction(args=tuple(words), **base)  # type: ignore[arg-type]


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    src = lex(text)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ll in src.lines:
        ins = _instruction(ll, src.escape)
        if ins.cmd == "FROM":
            name = ins.args[2].lower() if len(ins.args) == 3 else ""
            if name and not _valid_stage_name(name):
                raise ParseError(ins.line, f"invalid name for build stage: {name!r}, name can't start with a number or contain symbols")
            for st in stages:
                if name and st.name == name:
                    raise ParseError(ins.line, f"duplicate stage name {name!r}")
            stages.append(Stage(len(stages), name, ins.args[0], ins.flag("platform") or "", ins.line, ins.original))
        elif not stages:
            if ins.cmd != "ARG":
                raise ParseError(ins.line, "no build stage in current context")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ParseError(1, "file with no instructions") if not meta else ParseError(
            meta[-1].line, "no build stage in current context"
        )
    return Dockerfile(src.directives, src.escape, meta, stages)


def _valid_stage_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[a-z][a-z0-9._-]*", name) is not None


# ---- expansion helpers used by the builder ---------------------------------------------


def expand(word: str, env: Mapping[str, str], escape: str = "\\", line: int = 0) -> str:
    try:
        return process_word(word, env, escape)
    except ExpansionError as err:
        raise ParseError(line, str(err)) from None


def arg_pairs(ins: Instruction) -> list[tuple[str, str | None]]:
    """ARG's declarations: (name, raw default or None)."""
    out: list[tuple[str, str | None]] = []
    for w in ins.args:
        name, eq, default = w.partition("=")
        if not name:
            raise ParseError(ins.line, "ARG names can not be blank")
        out.append((name, default if eq else None))
    return out
