"""`dockyard container move NAME --to HOST --live`: move a running container with its
processes, memory and established TCP connections (CRIU through both daemons' APIs).

The order keeps the container in one place a user can observe, and every failure after
the freeze resumable on the source from the very checkpoint that was taken:

1. the cold move's checks (cli/move.py), plus: the container runs, has no TTY, and the
   target has a working criu (`GET /dockyard/move/capabilities`);
2. send the image layers the target lacks while the container runs;
3. create it on the target, stopped, with the same addresses: on each user-defined
   network the same IPv4 address and MAC (the target's network must be the same L2
   segment for peers to follow; on the default bridge the address cannot be asked for);
4. freeze: checkpoint on the source with `TCPEstablished` and exit: CRIU dumps the
   connections in repair mode (no FIN, no RST) and leaves the network namespace out as
   an external one; from here the container runs nowhere;
5. send its writable layer, its volumes (`--with-volumes`) and the checkpoint;
6. restore on the target (`start?checkpoint=`): the daemon pins a new namespace, plugs it
   with the asked address and MAC, and has runc restore into it by path, so the sockets
   come back where their address and routes already are; see it running: the freeze ends;
7. remove it from the source, and the checkpoint from the target.

The move journal (cli/move.py's begin/mark/settle/finish, containers/movejournal.py)
is written before the freeze; the target's restore is the commit point, so a `kill -9`
of either daemon or of this CLI is finished or undone by the next daemon.
Not yet: memory sent ahead (lazy pages).

A failure in 4 leaves it running on the source (CRIU resumes it when a dump fails); in
5-6 the target's container is removed and the source restores the checkpoint it took.
"""

from __future__ import annotations

import time
from typing import Any

import click

from dockyard import errdefs
from dockyard.cli import move as cold
from dockyard.client import Client

USER_NETWORKS_KEEP = "user-defined networks keep the address"


def check_live(plan: cold.Plan, dst: Client) -> None:
    info = plan.info
    if not info["State"].get("Running"):
        raise cold.refuse(plan.name, "it is not running (a live move needs a running container)")
    if info["Config"].get("Tty"):
        raise cold.refuse(plan.name, "it has a TTY, which CRIU cannot checkpoint")
    caps = dst.request("GET", "/dockyard/move/capabilities", stream=False).json()
    if not caps.get("Live"):
        raise cold.refuse(
            plan.name, f"{dst.host} cannot restore a live move: {caps.get('LiveProblem') or 'no criu'}"
        )


def create_body(plan: cold.Plan, image: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The cold move's create request, with each user-defined network's address and MAC
    asked for, so the restored connections and peers' ARP caches stay valid."""
    body, others = cold.create_body(plan, image)
    nets = (plan.info.get("NetworkSettings") or {}).get("Networks") or {}

    def pinned(net: str, cfg: dict[str, Any]) -> dict[str, Any]:
        ep = nets.get(net) or {}
        if net in ("bridge", "host", "none") or not ep.get("IPAddress"):
            return cfg
        out = dict(cfg)
        out["IPAMConfig"] = {**(cfg.get("IPAMConfig") or {}), "IPv4Address": ep["IPAddress"]}
        if ep.get("MacAddress"):
            out["MacAddress"] = ep["MacAddress"]
        return out

    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    primary = str((plan.info.get("HostConfig") or {}).get("NetworkMode") or "default")
    if primary not in endpoints and primary in nets:
        endpoints[primary] = {}
    endpoints = {n: pinned(n, c) for n, c in endpoints.items()}
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body, [(n, pinned(n, c)) for n, c in others]


def live_move(src: Client, dst: Client, ref: str, *, with_volumes: bool, dry_run: bool) -> None:
    t_start = time.monotonic()
    plan = cold.make_plan(src, dst, ref, with_volumes)
    check_live(plan, dst)
    cold.describe(plan, dst, with_volumes)
    nets = (plan.info.get("NetworkSettings") or {}).get("Networks") or {}
    if "bridge" in nets:
        click.echo("  note: on the default bridge the address changes; only " + USER_NETWORKS_KEEP)
    if dry_run:
        click.echo("dry run: nothing sent (live: the checkpoint is taken and sent when moving)")
        return
    cid = plan.info["Id"]
    cold.send_image(src, dst, plan)
    image = cold.image_ref_for_target(dst, plan)
    made_volumes: list[str] = []
    target_id = ""
    checkpoint = f"move-{int(time.time() * 1000)}"
    mid = cold.move_id(cid)
    try:
        body, others = create_body(plan, image)
        cold.mark(body, mid)
        made_volumes = cold.create_volumes(src, dst, plan)
        target_id = dst.post_json("/containers/create", body=body, params={"name": plan.name})["Id"]
        for net, cfg in others:
            dst.post_json(f"/networks/{net}/connect", body={"Container": target_id, "EndpointConfig": cfg})
    except BaseException:
        cold.undo_target(dst, target_id, made_volumes)  # nothing was frozen yet
        raise
    try:
        cold.begin(src, dst, cid, mid, live=True, checkpoint=checkpoint, with_volumes=with_volumes)
        frozen_at = time.monotonic()
        src.post_json(
            "/containers/{0}/checkpoints", cid,
            body={"CheckpointID": checkpoint, "Exit": True, "TCPEstablished": True},
        )  # fmt: skip
        click.echo(f"checkpoint {checkpoint} taken in {time.monotonic() - frozen_at:.2f}s")
        cold.pause_at("stopped")
        cold.stream(src, dst, f"/dockyard/containers/{cid}/layer", "PUT",
                     f"/dockyard/containers/{target_id}/layer", "writable layer", plan=plan)  # fmt: skip
        cold.send_volumes(src, dst, plan, target_id)
        cold.stream(src, dst, f"/dockyard/containers/{cid}/checkpoints/{checkpoint}/archive", "PUT",
                     f"/dockyard/containers/{target_id}/checkpoints/{checkpoint}/archive",
                     "checkpoint (processes and memory)", plan=plan)  # fmt: skip
        cold.pause_at("sent")
        dst.request("POST", "/containers/{0}/start", target_id, params={"checkpoint": checkpoint}, stream=False)
        state = dst.inspect_container(target_id)["State"]
        if not state["Running"]:
            raise errdefs.Internal(f"the container did not keep running on the target: exit {state['ExitCode']}")
        frozen = time.monotonic() - frozen_at
    except BaseException as err:
        click.echo(f"move failed ({err}); resuming {plan.name} on the source", err=True)
        # the source restores from its checkpoint (or, had the dump failed, still runs)
        cold.settle(src, dst, cid, mid, made_volumes)
        raise
    cold.pause_at("started")
    _forget(dst, target_id, checkpoint)
    cold.finish(src, dst, cid, mid, plan, frozen)
    click.echo(
        f"moved {plan.name} live to {dst.host} as {target_id[:12]}: frozen {frozen * 1000:.0f} ms, "
        f"total {time.monotonic() - t_start:.2f}s"
    )


def _forget(c: Client, cid: str, checkpoint: str) -> None:
    try:
        c.request("DELETE", "/containers/{0}/checkpoints/{1}", cid, checkpoint, stream=False)
    except errdefs.DockyardError:
        pass
