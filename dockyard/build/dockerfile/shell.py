"""Docker's word expansion for Dockerfile instructions (sans-IO).

Emulates moby's `shell.Lex.ProcessWord`: single quotes are literal, double quotes expand
`$VAR`, the escape character (`\\` or the `escape` directive's) quotes the next character,
and `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
`${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}` are
replaced from the environment. An unset variable expands to nothing, as in Docker.
Nothing here touches files or processes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from dockyard.errdefs import InvalidArgument

__all__ = ["ExpansionError", "env_map", "process_word", "split_words"]


class ExpansionError(InvalidArgument):
    pass


def env_map(env: list[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(env, Mapping):
        return dict(env)
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def _is_name(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def process(self, stop: str = "") -> str:
        out: list[str] = []
        while self.i < len(self.s):
            ch = self.peek()
            if stop and ch == stop:
                self.i += 1
                return "".join(out)
            if ch == "'":
                self.i += 1
                end = self.s.find("'", self.i)
                if end < 0:
                    raise ExpansionError("unexpected end of statement while looking for matching single-quote")
                out.append(self.s[self.i : end])
                self.i = end + 1
            elif ch == '"':
                self.i += 1
                out.append(self._double())
            elif ch == "$":
                self.i += 1
                out.append(self._dollar())
            elif ch == self.esc:
                self.i += 1
                nxt = self.next()
                out.append(nxt if nxt else self.esc)
            else:
                out.append(ch)
                self.i += 1
        if stop:
            raise ExpansionError(f"syntax error: missing '{stop}' in {self.s!r}")
        return "".join(out)

    def _double(self) -> str:
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == "":
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.esc:
                nxt = self.peek()
                if nxt in ('"', "$", self.esc) and nxt:
                    out.append(self.next())
                else:
                    out.append(ch)
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.i
        while self.i < len(self.s) and _is_name(self.s[self.i]):
            self.i += 1
        return self.s[start : self.i]

    def _dollar(self) -> str:
        if self.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self.i += 1
        if self.peek() == "#" and self.i + 1 < len(self.s) and _is_name(self.s[self.i + 1]):
            self.i += 1
            name = self._name()
            if self.next() != "}":
                raise ExpansionError(f"bad substitution in {self.s!r}")
            return str(len(self.env.get(name, "")))
        name = self._name()
        if not name:
            raise ExpansionError(f"bad substitution in {self.s!r}")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        value = self.env.get(name)
        is_set = value is not None and (not colon or value != "")
        if ch in ("-", "+", "?"):
            word = self.process(stop="}")
            if ch == "-":
                return value if is_set else word  # type: ignore[return-value]
            if ch == "+":
                return word if is_set else ""
            if not is_set:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            return value  # type: ignore[return-value]
        if not colon and ch in ("#", "%"):
            longest = self.peek() == ch
            if longest:
                self.i += 1
            pattern = self.process(stop="}")
            return _trim(value or "", pattern, prefix=ch == "#", longest=longest)
        raise ExpansionError(f"unsupported modifier ({ch}) in substitution of {name}")


def _trim(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    idx = range(len(value) + 1)
    order = reversed(idx) if longest else idx
    for n in order:
        if prefix and fnmatch.fnmatchcase(value[:n], pattern):
            return value[n:]
        if not prefix and fnmatch.fnmatchcase(value[len(value) - n :], pattern):
            return value[: len(value) - n]
    return value


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word: quotes removed, variables substituted."""
    return _Lexer(word, env, escape).process()


def split_words(text: str, escape: str = "\\") -> list[str]:
    """moby's parseWords: split on whitespace outside quotes; quotes and escapes are kept."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and i + 1 < len(text) and quote != "'":
            cur.append(ch + text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
            cur.append(ch)
        elif ch in ("'", '"'):
            quote = ch
            cur.append(ch)
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words
