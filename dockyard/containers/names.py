"""Container names: validation and Docker-style generated names (adjective_surname)."""

from __future__ import annotations

import random
import re

from dockyard.errdefs import InvalidArgument

VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = (
    "admiring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "brave", "busy",
    "charming", "clever", "cool", "dazzling", "determined", "dreamy", "eager", "ecstatic",
    "elegant", "epic", "festive", "focused", "friendly", "gallant", "gifted", "goofy", "happy",
    "hopeful", "jolly", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
    "nice", "nostalgic", "optimistic", "peaceful", "practical", "quirky", "relaxed", "serene",
    "sharp", "stoic", "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "zealous",
)  # fmt: skip
_RIGHT = (
    "albattani", "babbage", "bardeen", "bell", "bohr", "cannon", "curie", "darwin", "dijkstra",
    "einstein", "euclid", "fermat", "feynman", "galileo", "gauss", "goldberg", "hawking",
    "hopper", "hypatia", "kepler", "knuth", "lamarr", "leakey", "lovelace", "mayer", "mccarthy",
    "meitner", "newton", "noether", "pascal", "payne", "ritchie", "shannon", "thompson",
    "torvalds", "turing", "wilson", "wozniak", "yalow",
)  # fmt: skip


def validate(name: str) -> str:
    """Returns the name with its leading slash, as Docker stores it."""
    if not VALID_NAME.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def generate(retry: int = 0) -> str:
    name = f"/{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
    return name + str(random.randint(0, 99)) if retry else name
