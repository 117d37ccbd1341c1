"""The Dockerfile lexer, parser and word expansion, and .dockerignore matching (no IO)."""

from __future__ import annotations

import pytest

from dockyard.build.context import IgnoreMatcher, parse_dockerignore
from dockyard.build.dockerfile import ParseError, parse, process_word


def _ins(text: str) -> list:
    return parse(text).stages[-1].instructions


def test_directives_escape_and_syntax() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n  b\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert df.escape == "`"
    assert df.stages[0].instructions[0].args == ("echo a   b",)


def test_directive_after_comment_is_a_comment() -> None:
    df = parse("# hello\n# escape=`\nFROM busybox\nRUN echo a \\\n b\n")
    assert df.escape == "\\"
    assert df.stages[0].instructions[0].args == ("echo a  b",)


def test_continuation_skips_comments_and_blank_lines() -> None:
    (run,) = _ins("FROM x\nRUN echo 1 \\\n# inner comment\n\n  && echo 2\n")
    assert run.args == ("echo 1   && echo 2",)
    assert run.line == 2


def test_exec_and_shell_forms() -> None:
    cmd, ep, run = _ins('FROM x\nCMD ["a", "b"]\nENTRYPOINT echo hi\nRUN ["x"]\n')
    assert cmd.json and cmd.args == ("a", "b")
    assert not ep.json and ep.args == ("echo hi",)
    assert run.json


def test_env_label_forms() -> None:
    env, legacy, label = _ins('FROM x\nENV A=1 B="two words" C=a\\ b\nENV D some value\nLABEL "k 1"=v k2=\'v 2\'\n')
    assert env.pairs() == [("A", "1"), ("B", '"two words"'), ("C", "a\\ b")]
    assert [(k, process_word(v, {})) for k, v in env.pairs()] == [("A", "1"), ("B", "two words"), ("C", "a b")]
    assert legacy.pairs() == [("D", "some value")]
    assert [(process_word(k, {}), process_word(v, {})) for k, v in label.pairs()] == [("k 1", "v"), ("k2", "v 2")]


def test_every_instruction_parses() -> None:
    text = """ARG BASE=busybox
FROM --platform=linux/amd64 ${BASE} AS build
MAINTAINER someone
ARG V=1 W
ENV A=1
LABEL a=b
EXPOSE 80 53/udp
ADD --chown=1:1 a.tar /
COPY --from=0 --chmod=644 --link /x /y
VOLUME ["/v"]
USER nobody
WORKDIR /app
ONBUILD RUN echo hi
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=3 CMD true
SHELL ["/bin/sh", "-ec"]
RUN echo done
CMD ["sh"]
ENTRYPOINT ["/bin/sh", "-c"]
"""
    df = parse(text)
    assert [m.cmd for m in df.meta_args] == ["ARG"]
    st = df.stages[0]
    assert st.name == "build" and st.platform == "linux/amd64" and st.base == "${BASE}"
    cmds = [i.cmd for i in st.instructions]
    assert cmds == ["MAINTAINER", "ARG", "ENV", "LABEL", "EXPOSE", "ADD", "COPY", "VOLUME", "USER", "WORKDIR",
                    "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "RUN", "CMD", "ENTRYPOINT"]  # fmt: skip
    copy = st.instructions[6]
    assert copy.flag("from") == "0" and copy.flag("chmod") == "644" and copy.flag("link") == "true"
    hc = st.instructions[12]
    assert hc.args == ("CMD-SHELL", "true") and hc.flag("retries") == "3"
    assert st.instructions[10].sub is not None and st.instructions[10].sub.cmd == "RUN"


def test_heredocs() -> None:
    run, copy = _ins("FROM x\nRUN <<EOF\necho 1\necho 2\nEOF\nCOPY <<a <<-'b' /dir/\nx $A\na\n\ty $A\n\tb\n")
    assert run.heredocs[0].content == "echo 1\necho 2\n" and run.heredocs[0].expand
    assert [h.name for h in copy.heredocs] == ["a", "b"]
    assert copy.heredocs[1].content == "y $A\n" and not copy.heredocs[1].expand


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM busybox\nFOO bar\n", "dockerfile parse error on line 2: unknown instruction: FOO"),
        ("FROM busybox\n\nRUN\n", "dockerfile parse error on line 3: RUN requires at least one argument"),
        ("FROM a b\n", "dockerfile parse error on line 1: FROM requires either one or three arguments"),
        ("RUN x\n", "dockerfile parse error on line 1: no build stage in current context"),
        ("", "file with no instructions"),
        ("FROM x\nCOPY a\n", "COPY requires at least two arguments"),
        ("FROM x\nCOPY --bogus=1 a b\n", "dockerfile parse error on line 2: unknown flag: bogus"),
        ("FROM x\nSHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
        ("FROM x\nRUN <<EOF\necho\n", "unterminated heredoc EOF"),
        ("FROM x AS a\nFROM y AS a\n", "duplicate stage name"),
        ("FROM x\nONBUILD FROM y\n", "FROM isn't allowed as an ONBUILD trigger"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse(text)
    assert message in str(exc.value)


def test_stage_lookup() -> None:
    df = parse("FROM a AS One\nFROM b\nFROM c AS three\n")
    assert df.stage_index("one") == 0 and df.stage_index("ONE") == 0
    assert df.stage_index("1") == 1 and df.stage_index("three") == 2 and df.stage_index("nope") is None


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "1"),
        ("${A}x", "1x"),
        ("${NOPE:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${A:+set}", "set"),
        ("${NOPE:+set}", ""),
        ("${EMPTY+set}", "set"),
        ("'$A'", "$A"),
        ('"$A b"', "1 b"),
        ("\\$A", "$A"),
        ("${P%.tar.gz}", "file"),
        ("${P#fi}", "le.tar.gz"),
        ("${NOPE}", ""),
        ("$", "$"),
    ],
)
def test_expansion(word: str, expected: str) -> None:
    assert process_word(word, {"A": "1", "EMPTY": "", "P": "file.tar.gz"}) == expected


def test_expansion_required_variable() -> None:
    with pytest.raises(Exception, match="NOPE: must be set"):
        process_word("${NOPE:?must be set}", {})


def test_dockerignore_rules() -> None:
    m = IgnoreMatcher(parse_dockerignore("# comment\n*.log\n!keep.log\n**/tmp\nsecret/\ndocs\n!docs/README.md\n/abs\n"))
    excluded = ["a.log", "x/y/tmp", "tmp", "tmp/z", "secret/a", "docs/x", "abs"]
    included = ["keep.log", "sub/a.log", "docs/README.md", "src/a.py"]
    assert [p for p in excluded if not m.matches(p)] == []
    assert [p for p in included if m.matches(p)] == []


def test_dockerignore_double_star_middle() -> None:
    m = IgnoreMatcher(parse_dockerignore("a/**/b.txt\n"))
    assert m.matches("a/b.txt") and m.matches("a/x/y/b.txt") and not m.matches("c/b.txt")
