"""The build's domain model: what a build is asked to do and what a RUN step's container is.

Owns `BuildOptions` (parsed from `POST /build`'s query by the API layer), `BuildError`, and
`RunSpec`, the frozen description of the container a RUN step runs in. The builder fills
a `RunSpec` from the stage's image config; the container runner (`build/runner.py`) alone
turns it into what the container service takes. No Docker request bodies here, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard import errdefs

__all__ = ["BuildError", "BuildOptions", "Resources", "RunSpec"]


class BuildError(errdefs.InvalidArgument):
    """A build step failed; `code` is the errorDetail code (a RUN's exit status)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    pull: bool = False
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    shmsize: int = 0
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpusetcpus: str = ""
    cpuperiod: int = 0
    cpuquota: int = 0
    platform: str = ""
    quiet: bool = False
    registry_config: str | None = None  # the X-Registry-Config header: credentials by registry
    cachefrom: list[str] = field(default_factory=list)  # images whose history may stand in for steps

    def resources(self) -> Resources:
        return Resources(
            shm_size=self.shmsize, memory=self.memory, memory_swap=self.memswap, cpu_shares=self.cpushares,
            cpuset_cpus=self.cpusetcpus, cpu_period=self.cpuperiod, cpu_quota=self.cpuquota,
        )  # fmt: skip

    def run_network(self) -> str:
        """The network mode of RUN containers: the default bridge, as dockerd's, unless asked."""
        return self.networkmode if self.networkmode and self.networkmode != "default" else "bridge"


@dataclass(frozen=True)
class Resources:
    """The build's resource options, applied to every RUN container (0 / "" = not set)."""

    shm_size: int = 0
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    cpu_period: int = 0
    cpu_quota: int = 0


@dataclass(frozen=True)
class RunSpec:
    """The container a RUN step runs in.

    `argv` is the whole command: the stage's shell and the script for a shell-form RUN
    (`shell` says which), the words themselves for an exec-form one. `env` already holds
    the build args in effect after the image's own variables. Everything else a RUN
    container is (no entrypoint, stdout and stderr attached, no labels, never a health
    probe) is the same for every step and belongs to the runner."""

    image: str
    argv: tuple[str, ...]
    shell: tuple[str, ...] = ()  # empty for an exec-form RUN
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    network_mode: str = "bridge"
    extra_hosts: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
