"""Dockerfile-style changes for import/commit (dockyard.images.config)."""

from __future__ import annotations

import pytest

from dockyard.errdefs import InvalidArgument
from dockyard.images.config import apply_changes


def test_all_instructions() -> None:
    cfg = apply_changes(
        {"Env": ["PATH=/bin", "A=old"], "Cmd": ["old"]},
        [
            'CMD ["sh", "-c", "echo hi"]',
            "ENV A=1 B='two words'",
            "ENV C 3 and more",
            "EXPOSE 80 53/udp 8000-8001",
            'LABEL a=b "c d"=e',
            "USER nobody",
            "WORKDIR /srv",
            "WORKDIR app",
            'VOLUME ["/data"]',
            "VOLUME /v1 /v2",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN echo hi",
        ],
    )
    assert cfg["Cmd"] == ["sh", "-c", "echo hi"]
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=3 and more"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert cfg["User"] == "nobody"
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["Volumes"] == {"/data": {}, "/v1": {}, "/v2": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["OnBuild"] == ["RUN echo hi"]


def test_shell_form_and_entrypoint_resets_cmd() -> None:
    cfg = apply_changes({"Cmd": ["x"]}, ["ENTRYPOINT /bin/app --flag"])
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/app --flag"]
    assert cfg["Cmd"] is None
    cfg = apply_changes({}, ['CMD ["a"]', 'ENTRYPOINT ["e"]'])
    assert cfg["Cmd"] == ["a"] and cfg["Entrypoint"] == ["e"]


def test_rejects_other_instructions() -> None:
    with pytest.raises(InvalidArgument, match="run is not a valid change command"):
        apply_changes({}, ["RUN echo"])
