"""Dockerfile lexer (sans-IO): parser directives, comments, continuations and heredocs.

Turns the file's text into logical lines, each with the line numbers it spans and the
heredoc bodies that follow it. Emulates moby's `parser.Parse`: directives (`escape`,
`syntax`, `check`) are read only at the very top, before any comment, blank line or
instruction; a line ending in the escape character continues on the next one; comment
lines and blank lines inside a continuation are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dockyard.errdefs import InvalidArgument

__all__ = ["Heredoc", "LogicalLine", "ParseError", "Source", "lex"]

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")


class ParseError(InvalidArgument):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}")
        self.line = line
        self.detail = message


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool = True  # an unquoted delimiter: variables in the body are expanded
    chomp: bool = False  # <<- strips leading tabs


@dataclass(frozen=True)
class LogicalLine:
    start: int
    end: int
    text: str
    heredocs: tuple[Heredoc, ...] = ()


@dataclass
class Source:
    directives: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    lines: list[LogicalLine] = field(default_factory=list)


def _read_directives(raw: list[str]) -> tuple[dict[str, str], int]:
    directives: dict[str, str] = {}
    i = 0
    while i < len(raw):
        m = _DIRECTIVE.match(raw[i].strip())
        if not raw[i].lstrip().startswith("#") or m is None:
            break
        key = m.group(1).lower()
        if key not in ("escape", "syntax", "check"):
            break  # an unknown directive is a comment, and ends the directives
        if key in directives:
            raise ParseError(i + 1, f"only one {key} parser directive can be used")
        directives[key] = m.group(2)
        i += 1
    return directives, i


def _continues(line: str, escape: str) -> tuple[bool, str]:
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return True, stripped[: -len(escape)]
    return False, line


def lex(text: str) -> Source:
    raw = text.replace("\r\n", "\n").split("\n")
    if raw and raw[0].startswith("\ufeff"):
        raw[0] = raw[0][1:]
    directives, i = _read_directives(raw)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise ParseError(1, f"invalid escape token '{escape}' does not match ` or \\")
    src = Source(directives, escape)
    while i < len(raw):
        line = raw[i]
        start = i + 1
        i += 1
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts: list[str] = []
        cont, body = _continues(line, escape)
        parts.append(body)
        while cont and i < len(raw):
            nxt = raw[i]
            i += 1
            ns = nxt.strip()
            if ns.startswith("#"):
                continue
            if not ns:
                continue
            cont, body = _continues(nxt, escape)
            parts.append(body)
        joined = "".join(parts).strip()
        end = i
        heredocs: list[Heredoc] = []
        word = joined.split(None, 1)[0].upper() if joined else ""
        if word == "ONBUILD" and len(joined.split(None, 2)) > 1:
            word = joined.split(None, 2)[1].upper()
        if word in HEREDOC_INSTRUCTIONS:
            for m in _HEREDOC.finditer(joined):
                chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
                body_lines: list[str] = []
                while True:
                    if i >= len(raw):
                        raise ParseError(start, f"unterminated heredoc {name}")
                    hl = raw[i]
                    i += 1
                    cmp = hl.lstrip("\t") if chomp else hl
                    if cmp == name:
                        break
                    body_lines.append(cmp)
                content = "".join(b + "\n" for b in body_lines)
                heredocs.append(Heredoc(name, content, expand=not quote, chomp=chomp))
            end = i
        src.lines.append(LogicalLine(start, end, joined, tuple(heredocs)))
    return src
