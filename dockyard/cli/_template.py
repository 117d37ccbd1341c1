"""A small Go text/template subset for `--format`: fields, pipelines, if/else/range/with, docker's funcs.

Owns parsing and evaluating templates over dicts (raw inspect JSON) or context objects (ps,
images, ...); it knows nothing about commands or tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = "<no value>"


class TemplateError(ValueError):
    pass


def go_str(v: Any) -> str:
    """Render a value the way Go's fmt `%v` would for JSON-decoded data."""
    if v is None:
        return NO_VALUE
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str_inner(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str_inner(v[k])}" for k in sorted(v)) + "]"
    if hasattr(v, "to_json"):
        return go_str(v.to_json())
    return str(v)


def go_str_inner(v: Any) -> str:
    return "<nil>" if v is None else go_str(v)


def _json(v: Any) -> str:
    if hasattr(v, "to_json"):
        # CLI contexts marshal through Go's json.Marshal, which escapes HTML characters.
        out = json.dumps(v.to_json(), ensure_ascii=False, separators=(",", ":"))
        return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _truthy(v: Any) -> bool:
    return bool(v) and v != NO_VALUE


def _truncate(s: Any, n: int) -> str:
    return go_str(s)[: int(n)]


def _pad(s: Any, left: int, right: int) -> str:
    return " " * int(left) + go_str(s) + " " * int(right)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None:
            return None
        if isinstance(v, dict):
            v = v.get(k)
        else:
            v = v[int(k)]
    return v


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "split": lambda s, sep: go_str(s).split(sep),
    "join": lambda xs, sep: sep.join(go_str(x) for x in (xs or [])),
    "truncate": _truncate,
    "pad": _pad,
    "index": _index,
    "len": lambda v: len(v) if v is not None else 0,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": lambda f, *a: _printf(f, a),
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


def _printf(fmt: str, args: tuple[Any, ...]) -> str:
    conv = re.sub(r"%v|%s|%d|%q", "{}", fmt)
    vals = [
        json.dumps(go_str(a)) if m == "%q" else go_str(a)
        for a, m in zip(args, re.findall(r"%v|%s|%d|%q", fmt), strict=False)
    ]
    return conv.format(*vals)


# -- parsing ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<field>(?:\$\w*)?(?:\.[\w-]+)+|\.)'
    r"|(?P<var>\$\w*)|(?P<pipe>\|)|(?P<lp>\()|(?P<rp>\))|(?P<ident>[A-Za-z_]\w*))"
)


@dataclass
class _Node:
    kind: str  # text, action, if, range, with
    text: str = ""
    pipe: list[Any] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] = field(default_factory=list)


def _lex_pipe(src: str) -> list[Any]:
    """Parse `a b | c d` into a list of commands, each a list of operand tuples."""
    pos, tokens = 0, []
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: unexpected {src[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
    cmds: list[list[Any]] = [[]]
    stack: list[list[list[Any]]] = []
    for kind, val in tokens:
        if kind == "pipe":
            cmds.append([])
        elif kind == "lp":
            stack.append(cmds)
            cmds = [[]]
        elif kind == "rp":
            sub = ("sub", cmds)
            cmds = stack.pop()
            cmds[-1].append(sub)
        else:
            cmds[-1].append((kind, val))
    return cmds


def parse(src: str) -> list[_Node]:
    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", src, flags=re.DOTALL)
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    trim_next = False
    for i, part in enumerate(parts):
        if i % 2 == 0:
            text = part.lstrip() if trim_next else part
            if i + 1 < len(parts) and parts[i + 1].startswith("{{-"):
                text = text.rstrip()
            if text:
                stack[-1][1].append(_Node("text", text))
            continue
        trim_next = part.endswith("-}}")
        inner = part[2:-2].strip("-").strip()
        word = inner.split(None, 1)[0] if inner else ""
        rest = inner[len(word) :].strip()
        if word in ("if", "range", "with"):
            node = _Node(word, pipe=_lex_pipe(rest))
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif word == "else":
            open_node = stack[-1][0]
            if open_node is None:
                raise TemplateError("template: unexpected {{else}}")
            stack[-1] = (open_node, open_node.else_body)
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif inner.startswith("/*"):
            continue
        else:
            stack[-1][1].append(_Node("action", pipe=_lex_pipe(inner)))
    if len(stack) != 1:
        raise TemplateError("template: unexpected EOF")
    return root


# -- evaluation ------------------------------------------------------------------------------


def _lookup(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    if name.startswith("_"):
        raise TemplateError(f"template: can't evaluate field {name}")
    try:
        return getattr(obj, name)
    except AttributeError:
        raise TemplateError(f"template: can't evaluate field {name} in type {type(obj).__name__}") from None


class Template:
    def __init__(self, src: str) -> None:
        self.src = src
        self.nodes = parse(src)

    def render(self, dot: Any) -> str:
        out: list[str] = []
        self._exec(self.nodes, dot, dot, out)
        return "".join(out)

    def _exec(self, nodes: list[_Node], dot: Any, root: Any, out: list[str]) -> None:
        for n in nodes:
            if n.kind == "text":
                out.append(n.text)
            elif n.kind == "action":
                out.append(go_str(self._pipe(n.pipe, dot, root)))
            elif n.kind == "if":
                self._exec(n.body if _truthy(self._pipe(n.pipe, dot, root)) else n.else_body, dot, root, out)
            elif n.kind == "with":
                v = self._pipe(n.pipe, dot, root)
                if _truthy(v):
                    self._exec(n.body, v, root, out)
                else:
                    self._exec(n.else_body, dot, root, out)
            elif n.kind == "range":
                v = self._pipe(n.pipe, dot, root)
                items = list(v.values()) if isinstance(v, dict) else list(v or [])
                if not items:
                    self._exec(n.else_body, dot, root, out)
                for item in items:
                    self._exec(n.body, item, root, out)

    def _pipe(self, cmds: list[Any], dot: Any, root: Any) -> Any:
        val: Any = _MISSING
        for cmd in cmds:
            val = self._cmd(cmd, dot, root, val)
        return None if val is _MISSING else val

    def _cmd(self, cmd: list[Any], dot: Any, root: Any, piped: Any) -> Any:
        if not cmd:
            raise TemplateError("template: empty command")
        head = cmd[0]
        args = [self._operand(a, dot, root) for a in cmd[1:]]
        if piped is not _MISSING:
            args.append(piped)
        if head[0] == "ident":
            if head[1] in ("true", "false"):
                return head[1] == "true"
            if head[1] == "nil":
                return None
            fn = FUNCS.get(head[1])
            if fn is None:
                raise TemplateError(f'template: function "{head[1]}" not defined')
            return fn(*args)
        if head[0] == "field" and head[1] != "." and args:
            # method call with arguments, e.g. {{.Label "com.example"}}
            target = self._field(head[1], dot, root, call=False)
            return target(*args) if callable(target) else target
        if args:
            raise TemplateError(f"template: can't give argument to non-function {head[1]}")
        return self._operand(head, dot, root)

    def _operand(self, tok: Any, dot: Any, root: Any) -> Any:
        kind, val = tok
        if kind == "str":
            return json.loads(val) if val.startswith('"') else val[1:-1]
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "field":
            return self._field(val, dot, root)
        if kind == "var":
            return root
        if kind == "sub":
            return self._pipe(val, dot, root)
        if kind == "ident":
            return self._cmd([tok], dot, root, _MISSING)
        raise TemplateError(f"template: bad operand {val}")

    def _field(self, path: str, dot: Any, root: Any, call: bool = True) -> Any:
        if path == ".":
            return dot
        obj = dot
        if path.startswith("$"):
            obj = root
            path = path[path.index(".") :] if "." in path else "."
            if path == ".":
                return obj
        names = path[1:].split(".")
        for i, name in enumerate(names):
            obj = _lookup(obj, name)
            if callable(obj) and (call or i < len(names) - 1):
                obj = obj()
        return obj


_MISSING = object()
