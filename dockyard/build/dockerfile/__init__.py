"""The Dockerfile lexer, parser and word expansion: text in, instructions out (sans-IO)."""

from dockyard.build.dockerfile.lexer import Heredoc, ParseError
from dockyard.build.dockerfile.parser import Dockerfile, Instruction, Stage, arg_pairs, expand, parse
from dockyard.build.dockerfile.shell import process_word, split_words

__all__ = [
    "Dockerfile", "Heredoc", "Instruction", "ParseError", "Stage", "arg_pairs", "expand", "parse",
    "process_word", "split_words",
]  # fmt: skip
