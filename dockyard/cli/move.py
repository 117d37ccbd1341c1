"""`dockyard container move NAME --to HOST`: a cold move of a container to another daemon
(`--live`: cli/livemove.py, which reuses the steps here).

The CLI orchestrates; each daemon only answers requests (api/routes/move.py and Docker's
own routes), so no shared filesystem is assumed. The order keeps the container in exactly
one place a user can observe, and makes every failure resumable on the source:

1. check: the name is free on the target, no bind mount of a host path, no device, no
   `--volumes-from` or `container:` namespaces, the target has its user-defined networks;
2. send the image layers the target lacks (by diff ID) while the container still runs;
3. stop the container on the source;
4. create it on the target (same name, config, labels, env, ports, restart policy,
   networks by name), fill its writable layer with the source's diff, and its volumes
   (`--with-volumes`: named volumes the target lacks, and anonymous ones);
5. start it on the target (if it ran) and see it running there;
6. only then remove it from the source.

Any failure in 3-5 removes what was made on the target and starts the container on the
source again, unchanged. A `kill -9` of a daemon or of this CLI is covered by the move
journal (containers/movejournal.py): before 3 the source records the move; the target's
container carries the move's id, and its start (5) is the commit point; the failure path
and the success path both go through the target's decision (`/dockyard/moves/{id}/abort`)
and the source's `resolve`, which a restarted source daemon also runs by itself.
`DOCKYARD_MOVE_PAUSE_AT=<step>` (tests only; off when unset) makes the CLI stop for
60 s (or until SIGUSR1) at a step: stopped, created, sent, started. `--dry-run` stops after 1-2's questions and says what would be sent.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from dockyard import errdefs
from dockyard.client import Client


@dataclass
class Plan:
    info: dict[str, Any]
    image_id: str
    image_name: str
    layers: list[str]  # every diff ID of the image
    missing: list[str]  # those the target lacks
    layer_sizes: dict[str, int]
    volumes: list[dict[str, Any]]  # the container's volume mounts (Name, Destination)
    send_volumes: list[dict[str, Any]] = field(default_factory=list)
    size_rw: int = 0
    sent: int = 0  # bytes sent so far (the `move` events' figure)

    @property
    def name(self) -> str:
        return str(self.info["Name"]).lstrip("/")


def refuse(name: str, why: str) -> errdefs.DockyardError:
    return errdefs.InvalidArgument(f"cannot move container {name}: {why}")


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n:.1f}GB"


def make_plan(src: Client, dst: Client, ref: str, with_volumes: bool) -> Plan:
    info = src.inspect_container(ref)
    name = str(info["Name"]).lstrip("/")
    hc = info.get("HostConfig") or {}
    for m in info.get("Mounts") or []:
        if m.get("Type") == "bind":
            raise refuse(name, f"it bind-mounts the host path {m.get('Source')}, which does not move")
        if m.get("Type") == "volume" and (m.get("Driver") or "local") != "local":
            raise refuse(name, f"volume {m.get('Name')} uses driver {m.get('Driver')}")
    if hc.get("Devices"):
        raise refuse(name, f"it uses the host device {hc['Devices'][0].get('PathOnHost')}")
    if hc.get("VolumesFrom"):
        raise refuse(name, "it uses --volumes-from, which names a container on the source")
    for key in ("NetworkMode", "PidMode", "IpcMode"):
        if str(hc.get(key) or "").startswith("container:"):
            raise refuse(name, f"its {key} joins another container on the source")
    try:
        taken = dst.inspect_container(name)
    except errdefs.NotFound:
        taken = None
    if taken is not None:
        raise refuse(
            name, f"the name {name} is already in use on {dst.host} by container {taken['Id'][:12]}"
        )
    for net in (info.get("NetworkSettings") or {}).get("Networks") or {}:
        if net in ("bridge", "host", "none"):
            continue
        try:
            dst.inspect_network(net)
        except errdefs.NotFound:
            raise refuse(
                name, f"network {net} does not exist on {dst.host}: create it there first"
            ) from None
    image = src.inspect_image(info["Image"])
    layers = list((image.get("RootFS") or {}).get("Layers") or [])
    missing = dst.post_json("/dockyard/layers/missing", body={"DiffIDs": layers})["Missing"]
    sizes = {d: 0 for d in missing}
    volumes = [m for m in info.get("Mounts") or [] if m.get("Type") == "volume"]
    plan = Plan(info, image["Id"], str(info["Config"].get("Image") or ""), layers, missing, sizes, volumes)
    if with_volumes:
        for m in volumes:
            if _volume_is_anonymous(src, m["Name"]) or not _exists_volume(dst, m["Name"]):
                plan.send_volumes.append(m)
    sized = src.request("GET", "/containers/{0}/json", info["Id"], params={"size": "1"}, stream=False).json()
    plan.size_rw = int(sized.get("SizeRw") or 0)
    return plan


def _exists_volume(c: Client, name: str) -> bool:
    try:
        c.inspect_volume(name)
    except errdefs.NotFound:
        return False
    return True


def _volume_is_anonymous(c: Client, name: str) -> bool:
    labels = c.inspect_volume(name).get("Labels") or {}
    return "com.docker.volume.anonymous" in labels


def create_body(plan: Plan, image: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The target's create request, and the extra networks to connect afterwards."""
    info = plan.info
    body: dict[str, Any] = dict(info["Config"])
    body["Image"] = image
    hc = dict(info.get("HostConfig") or {})
    for key in ("ContainerIDFile",):
        hc.pop(key, None)
    body["HostConfig"] = hc
    short = info["Id"][:12]
    mode = str(hc.get("NetworkMode") or "default")
    endpoints: list[tuple[str, dict[str, Any]]] = []
    for net, ep in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [a for a in ep.get("Aliases") or [] if a != short]
        cfg: dict[str, Any] = {}
        if aliases:
            cfg["Aliases"] = aliases
        if ep.get("IPAMConfig"):
            cfg["IPAMConfig"] = ep["IPAMConfig"]
        endpoints.append((net, cfg))
    primary = [e for e in endpoints if e[0] == mode or (mode == "default" and e[0] == "bridge")]
    others = [e for e in endpoints if e not in primary]
    if primary and primary[0][1]:
        body["NetworkingConfig"] = {"EndpointsConfig": {primary[0][0]: primary[0][1]}}
    return body, others


def _counted(chunks: Iterator[bytes], total: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        total[0] += len(chunk)
        yield chunk


def stream(src: Client, dst: Client, src_path: str, dst_method: str, dst_path: str, what: str,
            src_params: dict[str, Any] | None = None, dst_params: dict[str, Any] | None = None,
            plan: Plan | None = None) -> Any:  # fmt: skip
    t0 = time.monotonic()
    resp = src.request("GET", src_path, params=src_params)
    total = [0]
    out = dst.request(
        dst_method, dst_path, params=dst_params, data=_counted(src.iter_bytes(resp), total),
        headers={"Content-Type": "application/x-tar"},
    )  # fmt: skip
    if dst_path == "/images/load":
        for _ in dst.iter_json(out):  # the load's progress; an error entry raises
            pass
    if plan is not None:
        plan.sent += total[0]
    dt = max(time.monotonic() - t0, 1e-6)
    click.echo(f"sent {what}: {_human(total[0])} in {dt:.2f}s ({_human(total[0] / dt)}/s)")
    return out


def image_ref_for_target(dst: Client, plan: Plan) -> str:
    """Use the container's image name on the target when it means the same image there
    (tagging it only if the target has no such name); else the image ID."""
    name = plan.image_name
    if not name or name.startswith("sha256:") or "@" in name:
        return plan.image_id
    try:
        if dst.inspect_image(name)["Id"] == plan.image_id:
            return name
        return plan.image_id
    except errdefs.NotFound:
        pass
    repo, tag = name, "latest"
    if ":" in name.rsplit("/", 1)[-1]:
        repo, _, tag = name.rpartition(":")
    dst.tag(plan.image_id, repo, tag)
    return name


def describe(plan: Plan, dst: Client, with_volumes: bool) -> None:
    click.echo(f"move {plan.name} ({plan.info['Id'][:12]}) to {dst.host}")
    have = len(plan.layers) - len(plan.missing)
    click.echo(
        f"  image {plan.image_name or plan.image_id} ({plan.image_id[:19]}): {len(plan.missing)} of "
        f"{len(plan.layers)} layers to send, {have} already on the target"
    )
    for d in plan.missing:
        click.echo(f"    layer {d}")
    click.echo(f"  writable layer: {_human(plan.size_rw)}")
    for m in plan.volumes:
        sent = m in plan.send_volumes
        why = "sent" if sent else ("kept on the source; the target uses its own" if with_volumes else
                                   "not sent (use --with-volumes)")  # fmt: skip
        click.echo(f"  volume {m['Name']} at {m['Destination']}: {why}")
    cfg, hc = plan.info["Config"], plan.info.get("HostConfig") or {}
    nets = ", ".join((plan.info.get("NetworkSettings") or {}).get("Networks") or {}) or "none"
    ports = json.dumps(hc.get("PortBindings") or {})
    click.echo(
        f"  config: name {plan.name}, {len(cfg.get('Env') or [])} env, {len(cfg.get('Labels') or {})} labels, "
        f"ports {ports}, restart {(hc.get('RestartPolicy') or {}).get('Name') or 'no'}, networks {nets}"
    )


def move(
    src: Client, dst: Client, ref: str, *, with_volumes: bool, dry_run: bool, stop_timeout: int | None
) -> None:
    plan = make_plan(src, dst, ref, with_volumes)
    describe(plan, dst, with_volumes)
    if dry_run:
        click.echo("dry run: nothing sent")
        return
    cid = plan.info["Id"]
    send_image(src, dst, plan)
    image = image_ref_for_target(dst, plan)
    was_running = bool(src.inspect_container(cid)["State"]["Running"])
    mid = move_id(cid)
    begin(src, dst, cid, mid, live=False, checkpoint="", with_volumes=with_volumes)
    frozen_at = time.monotonic()
    if was_running:
        try:
            src.stop(cid, timeout=stop_timeout)
        except errdefs.NotModified:
            pass
    pause_at("stopped")
    made_volumes: list[str] = []
    target_id = ""
    frozen = 0.0
    try:
        body, others = create_body(plan, image)
        mark(body, mid)
        made_volumes = create_volumes(src, dst, plan)
        created = dst.post_json("/containers/create", body=body, params={"name": plan.name})
        target_id = created["Id"]
        for net, cfg in others:
            dst.post_json(f"/networks/{net}/connect", body={"Container": target_id, "EndpointConfig": cfg})
        pause_at("created")
        stream(src, dst, f"/dockyard/containers/{cid}/layer", "PUT", f"/dockyard/containers/{target_id}/layer",
                "writable layer", plan=plan)  # fmt: skip
        send_volumes(src, dst, plan, target_id)
        pause_at("sent")
        if was_running:
            dst.start(target_id)
            state = dst.inspect_container(target_id)["State"]
            if not state["Running"]:
                raise errdefs.Internal(
                    f"the container did not keep running on the target: exit {state['ExitCode']}"
                )
            frozen = time.monotonic() - frozen_at
            click.echo(f"running on {dst.host} after {frozen:.2f}s stopped")
    except BaseException as err:
        click.echo(f"move failed ({err}); resuming {plan.name} on the source", err=True)
        settle(src, dst, cid, mid, made_volumes)
        raise
    pause_at("started")
    finish(src, dst, cid, mid, plan, frozen)
    click.echo(f"moved {plan.name} to {dst.host} as {target_id[:12]}")


PAUSE_ENV = "DOCKYARD_MOVE_PAUSE_AT"


def pause_at(step: str) -> None:
    """Test hook (off unless DOCKYARD_MOVE_PAUSE_AT names the step): hold the move here so
    a test can kill -9 a daemon or this CLI at a known point."""
    if os.environ.get(PAUSE_ENV) == step:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        click.echo(f"paused at {step}", err=True)
        signal.sigtimedwait({signal.SIGUSR1}, 60)  # SIGUSR1: go on


def move_id(cid: str) -> str:
    return f"{cid[:12]}-{int(time.time() * 1000)}"


def mark(body: dict[str, Any], mid: str) -> None:
    """The target's half of the journal: the container it creates carries the move's id."""
    body["Labels"] = {**(body.get("Labels") or {}), MOVE_LABEL: mid}


MOVE_LABEL = "org.dockyard.move"  # containers/movejournal.py reads it on the target


def begin(src: Client, dst: Client, cid: str, mid: str, *, live: bool, checkpoint: str, with_volumes: bool) -> None:
    """The source's half of the journal, before anything irreversible."""
    src.post_json(
        "/dockyard/containers/{0}/move", cid,
        body={"ID": mid, "To": dst.host, "Live": live, "Checkpoint": checkpoint, "WithVolumes": with_volumes},
    )  # fmt: skip


def settle(src: Client, dst: Client, cid: str, mid: str, made_volumes: list[str]) -> None:
    """A failed move: the target decides (it removes an uncommitted container and fences
    the move), then the source finishes or undoes accordingly. If the target cannot be
    asked, nothing is started on the source: its daemon settles it once it can."""
    try:
        outcome = str(dst.post_json("/dockyard/moves/{0}/abort", mid, body={})["Outcome"])
    except errdefs.DockyardError as err:
        click.echo(
            f"the target cannot be asked ({err}): the container stays stopped on the source with its "
            "move journal; the source daemon finishes or undoes the move once the target answers",
            err=True,
        )
        try:
            src.post_json("/dockyard/containers/{0}/move/resolve", cid, body={"Later": True})
        except errdefs.DockyardError:
            pass  # the source daemon is down too: it settles the move at its next start
        return
    if outcome == "aborted":
        undo_target(dst, "", made_volumes)
    try:
        src.post_json("/dockyard/containers/{0}/move/resolve", cid, body={"Outcome": outcome})
    except errdefs.DockyardError as err:
        click.echo(f"the source cannot settle the move yet ({err}); its daemon does at its next start", err=True)


def finish(src: Client, dst: Client, cid: str, mid: str, plan: Plan, frozen: float) -> None:
    """The target has it (it commits a container that was not running now): the source
    removes its copy; both publish `move` events."""
    attrs = {"frozenMs": str(int(frozen * 1000)), "bytes": str(plan.sent), "from": src.host}
    dst.post_json("/dockyard/moves/{0}/arrived", mid, body={"Attributes": attrs})
    src.post_json("/dockyard/containers/{0}/move/resolve", cid, body={"Outcome": "committed", "Attributes": attrs})


def send_image(src: Client, dst: Client, plan: Plan) -> None:
    """The image layers the target lacks (none when it has the image)."""
    if plan.missing or not _has_image(dst, plan.image_id):
        stream(src, dst, f"/dockyard/images/{plan.image_id}/archive", "POST", "/images/load",
                f"image ({len(plan.missing)} layers)",
                src_params={"skip": [d for d in plan.layers if d not in plan.missing]}, dst_params={"quiet": "1"},
                plan=plan)  # fmt: skip


def create_volumes(src: Client, dst: Client, plan: Plan) -> list[str]:
    """Named volumes the target lacks, made there: ours to clean up if the move fails."""
    made = []
    for m in plan.volumes:
        if not _exists_volume(dst, m["Name"]) and not _volume_is_anonymous(src, m["Name"]):
            dst.create_volume(m["Name"], labels=(src.inspect_volume(m["Name"]).get("Labels") or None))
            made.append(m["Name"])
    return made


def send_volumes(src: Client, dst: Client, plan: Plan, target_id: str) -> None:
    target_mounts = {m["Destination"]: m for m in dst.inspect_container(target_id).get("Mounts") or []}
    for m in plan.send_volumes:
        tm = target_mounts.get(m["Destination"])
        if tm is None or tm.get("Type") != "volume":
            raise errdefs.Internal(f"the target container has no volume at {m['Destination']}")
        stream(src, dst, f"/dockyard/volumes/{m['Name']}/content", "PUT",
                f"/dockyard/volumes/{tm['Name']}/content", f"volume {m['Name']}", plan=plan)  # fmt: skip


def undo_target(dst: Client, target_id: str, made_volumes: list[str]) -> None:
    """Remove what a failed move made on the target."""
    if target_id:
        try:
            dst.remove_container(target_id, force=True, v=True)
        except errdefs.DockyardError:
            pass
    for vol in made_volumes:
        try:
            dst.remove_volume(vol)
        except errdefs.DockyardError:
            pass


def _has_image(c: Client, image_id: str) -> bool:
    try:
        c.inspect_image(image_id)
    except errdefs.NotFound:
        return False
    return True
