"""The image config a stage builds up, and how each step's config is assembled.

Owns `StageState` (a stage's current image and its whole config while its steps run), the
config of a `FROM scratch` stage, what a stage's start does to its base's config
(dockerd's `beginStage`), and the config committed for a step (its `created` time, the
history entry). Pure: no images are read or written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.build.dockerfile import Stage

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHELL",
    "StageState",
    "begin_stage",
    "scratch_config",
    "short",
    "step_config",
]

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DOCKER_VERSION = "27.5.0"


@dataclass
class StageState:
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

    @property
    def layers(self) -> int:
        return len(self.cfg["rootfs"]["diff_ids"])

    def variables(self) -> dict[str, str]:
        """Variables for expansion: the stage's ARGs with a value, then its ENV (ENV wins)."""
        env = {k: v for k, v in self.args.items() if v is not None}
        for e in self.config.get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    def run_args(self) -> list[str]:
        """The build args a RUN sees (and its history records): those with a value that no
        ENV of the image overrides, sorted."""
        env_keys = {e.partition("=")[0] for e in self.config.get("Env") or []}
        return [f"{k}={v}" for k, v in sorted(self.args.items()) if v is not None and k not in env_keys]


def scratch_config(platform: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": [],
    }  # fmt: skip
    if platform:
        cfg["os"], _, arch = platform.partition("/")
        cfg["architecture"] = arch or "amd64"
    return cfg


def begin_stage(s: StageState) -> list[str]:
    """Prepares a stage's config from its base's; returns the base's ONBUILD triggers,
    which the stage runs first (and which its own image does not inherit)."""
    for key in ("container", "container_config", "comment", "author"):
        s.cfg.pop(key, None)
    # dockerd's beginStage: a stage whose base sets no PATH gets the default one
    base_env = list(s.config.get("Env") or [])
    if not any(e.partition("=")[0] == "PATH" for e in base_env):
        s.config["Env"] = [*base_env, "PATH=" + DEFAULT_PATH]
    triggers = list(s.config.get("OnBuild") or [])
    if triggers:
        s.config["OnBuild"] = None
    return triggers


def step_config(cfg: dict[str, Any], created: str, created_by: str, *, layer: bool) -> dict[str, Any]:
    """A copy of `cfg` as a step commits it: its time, and a history entry unless
    `created_by` is empty (a stage that ran no step); `layer` False marks it `empty_layer`."""
    out: dict[str, Any] = json.loads(json.dumps(cfg))
    out["created"] = created
    out["docker_version"] = _DOCKER_VERSION
    if created_by:
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if not layer:
            entry["empty_layer"] = True
        out.setdefault("history", []).append(entry)
    return out


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
