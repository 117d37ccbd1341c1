"""Renders a build's progress events as Docker's JSON-stream messages (`POST /build`).

Owns the words and shapes the docker CLI and docker-py read from the classic builder:
`{"stream": "Step 1/3 : FROM busybox\\n"}`, ` ---> Using cache`, ` ---> Running in ...`,
a RUN's stderr in red (as dockerd's stderr writer makes it), `{"aux": {"ID": ...}}`, and a
pull's progress messages passed through. Errors are rendered by the route.
"""

from __future__ import annotations

from typing import Any

from dockyard.build import progress as p

__all__ = ["render"]


def render(event: p.BuildEvent) -> dict[str, Any]:
    match event:
        case p.StepStarted(number, total, instruction):
            return _stream(f"Step {number}/{total} : {instruction}\n")
        case p.StepImage(image_id):
            return _stream(f" ---> {_short(image_id)}\n")
        case p.CacheHit():
            return _stream(" ---> Using cache\n")
        case p.RunStarted(cid):
            return _stream(f" ---> Running in {cid[:12]}\n")
        case p.Output(text, stderr):
            return _stream(f"\x1b[91m{text}\x1b[0m" if stderr else text)
        case p.ContainerRemoved(cid):
            return _stream(f"Removing intermediate container {cid[:12]}\n")
        case p.TriggersRunning(count):
            return _stream(f"# Executing {count} build trigger{'s' if count > 1 else ''}\n")
        case p.PullProgress(message):
            return dict(message)
        case p.UnusedBuildArgs(names):
            return _stream(f"[Warning] One or more build-args [{' '.join(names)}] were not consumed\n")
        case p.ImageBuilt(image_id):
            return {"aux": {"ID": image_id}}
        case p.SuccessfullyBuilt(image_id):
            return _stream(f"Successfully built {_short(image_id)}\n")
        case p.SuccessfullyTagged(name):
            return _stream(f"Successfully tagged {name}\n")
        case p.QuietImageID(image_id):
            return _stream(image_id + "\n")


def _stream(text: str) -> dict[str, Any]:
    return {"stream": text}


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
