"""The JSON request bodies the API accepts, one schema per body kind, as Docker's Go types.

Each schema is a small JSON Schema (the OpenAPI 3.0 subset `openapi.py` serves) with an
`x-go-type` on every node naming the Go type dockerd decodes that value into, so
`schemas.check` can word a type error as dockerd does ("json: cannot unmarshal string into
Go struct field ContainerCreateRequest.HostConfig of type container.HostConfig"). Only
shapes live here: what a value means is checked by the service that uses it. As in Go,
`null` is accepted anywhere (it leaves the field unset) and unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
    "uint64": (0, (1 << 64) - 1),
    "uint": (0, (1 << 64) - 1),
}


def string(go: str = "string") -> Schema:
    return {"type": "string", "nullable": True, "x-go-type": go}


def integer(go: str = "int64") -> Schema:
    lo, hi = _INT_RANGES[go]
    return {"type": "integer", "minimum": lo, "maximum": hi, "nullable": True, "x-go-type": go}


def boolean() -> Schema:
    return {"type": "boolean", "nullable": True, "x-go-type": "bool"}


def array(items: Schema, go: str | None = None, *, length: int | None = None) -> Schema:
    out: Schema = {"type": "array", "items": items, "nullable": True,
                   "x-go-type": go or "[]" + items["x-go-type"].lstrip("*")}  # fmt: skip
    if length is not None:
        out["maxItems"] = length  # a Go array ([2]uint): extra elements are an error there too
    return out


def mapping(values: Schema, go: str | None = None) -> Schema:
    return {"type": "object", "additionalProperties": values, "nullable": True,
            "x-go-type": go or "map[string]" + values["x-go-type"].lstrip("*")}  # fmt: skip


def struct(go: str, **fields: Schema) -> Schema:
    return {"type": "object", "properties": fields, "nullable": True, "x-go-type": go}


def strslice() -> Schema:
    """strslice.StrSlice: a string or a list of strings (Cmd, Entrypoint, Shell, CapAdd)."""
    return {"oneOf": [string(), array(string())], "nullable": True, "x-go-type": "strslice.StrSlice"}


def empty_struct_set(go: str) -> Schema:
    """Go's map[string]struct{} (ExposedPorts, Volumes): {"80/tcp": {}}."""
    return mapping(struct("struct {}"), go)


STRINGS = array(string())
STRING_MAP = mapping(string())

HEALTH_CONFIG = struct(
    "container.HealthConfig",
    Test=array(string()), Interval=integer("int64"), Timeout=integer("int64"),
    StartPeriod=integer("int64"), StartInterval=integer("int64"), Retries=integer("int"),
)  # fmt: skip

CONFIG_FIELDS: dict[str, Schema] = {
    "Hostname": string(), "Domainname": string(), "User": string(),
    "AttachStdin": boolean(), "AttachStdout": boolean(), "AttachStderr": boolean(),
    "ExposedPorts": empty_struct_set("nat.PortSet"), "Tty": boolean(), "OpenStdin": boolean(),
    "StdinOnce": boolean(), "Env": STRINGS, "Cmd": strslice(), "Healthcheck": HEALTH_CONFIG,
    "ArgsEscaped": boolean(), "Image": string(), "Volumes": empty_struct_set("map[string]struct {}"),
    "WorkingDir": string(), "Entrypoint": strslice(), "NetworkDisabled": boolean(),
    "MacAddress": string(), "OnBuild": STRINGS, "Labels": STRING_MAP, "StopSignal": string(),
    "StopTimeout": integer("int"), "Shell": strslice(),
}  # fmt: skip

_THROTTLE = struct("blkiodev.ThrottleDevice", Path=string(), Rate=integer("uint64"))

RESOURCES_FIELDS: dict[str, Schema] = {
    "CpuShares": integer("int64"), "Memory": integer("int64"), "NanoCpus": integer("int64"),
    "CgroupParent": string(), "BlkioWeight": integer("uint16"),
    "BlkioWeightDevice": array(struct("blkiodev.WeightDevice", Path=string(), Weight=integer("uint16")),
                               "[]*blkiodev.WeightDevice"),
    "BlkioDeviceReadBps": array(_THROTTLE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceWriteBps": array(_THROTTLE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceReadIOps": array(_THROTTLE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceWriteIOps": array(_THROTTLE, "[]*blkiodev.ThrottleDevice"),
    "CpuPeriod": integer("int64"), "CpuQuota": integer("int64"), "CpuRealtimePeriod": integer("int64"),
    "CpuRealtimeRuntime": integer("int64"), "CpusetCpus": string(), "CpusetMems": string(),
    "Devices": array(struct("container.DeviceMapping", PathOnHost=string(), PathInContainer=string(),
                            CgroupPermissions=string())),
    "DeviceCgroupRules": STRINGS,
    "DeviceRequests": array(struct("container.DeviceRequest", Driver=string(), Count=integer("int"),
                                   DeviceIDs=STRINGS, Capabilities=array(STRINGS), Options=STRING_MAP)),
    "KernelMemory": integer("int64"), "KernelMemoryTCP": integer("int64"),
    "MemoryReservation": integer("int64"), "MemorySwap": integer("int64"),
    "MemorySwappiness": integer("int64"), "OomKillDisable": boolean(), "PidsLimit": integer("int64"),
    "Ulimits": array(struct("container.Ulimit", Name=string(), Hard=integer("int64"), Soft=integer("int64")),
                     "[]*container.Ulimit"),
    "CpuCount": integer("int64"), "CpuPercent": integer("int64"),
    "IOMaximumIOps": integer("uint64"), "IOMaximumBandwidth": integer("uint64"),
}  # fmt: skip

RESTART_POLICY = struct("container.RestartPolicy", Name=string("container.RestartPolicyMode"),
                        MaximumRetryCount=integer("int"))  # fmt: skip

MOUNT = struct(
    "mount.Mount",
    Type=string("mount.Type"), Source=string(), Target=string(), ReadOnly=boolean(), Consistency=string(),
    BindOptions=struct("mount.BindOptions", Propagation=string("mount.Propagation"), NonRecursive=boolean(),
                       CreateMountpoint=boolean(), ReadOnlyNonRecursive=boolean(),
                       ReadOnlyForceRecursive=boolean()),
    VolumeOptions=struct("mount.VolumeOptions", NoCopy=boolean(), Labels=STRING_MAP, Subpath=string(),
                         DriverConfig=struct("mount.Driver", Name=string(), Options=STRING_MAP)),
    TmpfsOptions=struct("mount.TmpfsOptions", SizeBytes=integer("int64"), Mode=integer("uint32"),
                        Options=array(STRINGS)),
    ImageOptions=struct("mount.ImageOptions", Subpath=string()),
)  # fmt: skip

HOST_CONFIG = struct(
    "container.HostConfig",
    Binds=STRINGS, ContainerIDFile=string(),
    LogConfig=struct("container.LogConfig", Type=string(), Config=STRING_MAP),
    NetworkMode=string("container.NetworkMode"),
    PortBindings=mapping(array(struct("nat.PortBinding", HostIp=string(), HostPort=string())), "nat.PortMap"),
    RestartPolicy=RESTART_POLICY, AutoRemove=boolean(), VolumeDriver=string(), VolumesFrom=STRINGS,
    ConsoleSize=array(integer("uint"), "[2]uint", length=2), Annotations=STRING_MAP,
    CapAdd=strslice(), CapDrop=strslice(), CgroupnsMode=string("container.CgroupnsMode"),
    Dns=STRINGS, DnsOptions=STRINGS, DnsSearch=STRINGS, ExtraHosts=STRINGS, GroupAdd=STRINGS,
    IpcMode=string("container.IpcMode"), Cgroup=string("container.CgroupSpec"), Links=STRINGS,
    OomScoreAdj=integer("int"), PidMode=string("container.PidMode"), Privileged=boolean(),
    PublishAllPorts=boolean(), ReadonlyRootfs=boolean(), SecurityOpt=STRINGS, StorageOpt=STRING_MAP,
    Tmpfs=STRING_MAP, UTSMode=string("container.UTSMode"), UsernsMode=string("container.UsernsMode"),
    ShmSize=integer("int64"), Sysctls=STRING_MAP, Runtime=string(), Isolation=string("container.Isolation"),
    **RESOURCES_FIELDS,
    Mounts=array(MOUNT), MaskedPaths=STRINGS, ReadonlyPaths=STRINGS, Init=boolean(),
)  # fmt: skip

ENDPOINT_SETTINGS = struct(
    "network.EndpointSettings",
    IPAMConfig=struct("network.EndpointIPAMConfig", IPv4Address=string(), IPv6Address=string(),
                      LinkLocalIPs=STRINGS),
    Links=STRINGS, Aliases=STRINGS, DriverOpts=STRING_MAP, MacAddress=string(), NetworkID=string(),
    EndpointID=string(), Gateway=string(), IPAddress=string(), IPPrefixLen=integer("int"),
    IPv6Gateway=string(), GlobalIPv6Address=string(), GlobalIPv6PrefixLen=integer("int"),
    DNSNames=STRINGS, GwPriority=integer("int"),
)  # fmt: skip

CONTAINER_CREATE = struct(
    "container.CreateRequest",
    **CONFIG_FIELDS,
    HostConfig=HOST_CONFIG,
    NetworkingConfig=struct("network.NetworkingConfig",
                            EndpointsConfig=mapping(ENDPOINT_SETTINGS, "map[string]*network.EndpointSettings")),
)  # fmt: skip
CONTAINER_CREATE["x-go-name"] = "ContainerCreateRequest"  # the name dockerd's messages use

CONTAINER_CONFIG = struct("container.Config", **CONFIG_FIELDS)  # POST /commit

CONTAINER_UPDATE = struct("container.UpdateConfig", **RESOURCES_FIELDS, RestartPolicy=RESTART_POLICY)

EXEC_CREATE = struct(
    "container.ExecOptions",
    User=string(), Privileged=boolean(), Tty=boolean(), ConsoleSize=array(integer("uint"), "*[2]uint", length=2),
    AttachStdin=boolean(), AttachStderr=boolean(), AttachStdout=boolean(), Detach=boolean(),
    DetachKeys=string(), Env=STRINGS, WorkingDir=string(), Cmd=strslice(),
)  # fmt: skip

EXEC_START = struct("container.ExecStartOptions", Detach=boolean(), Tty=boolean(),
                    ConsoleSize=array(integer("uint"), "*[2]uint", length=2))  # fmt: skip

NETWORK_CREATE = struct(
    "network.CreateRequest",
    Name=string(), Driver=string(), Scope=string(), EnableIPv4=boolean(), EnableIPv6=boolean(),
    IPAM=struct("network.IPAM", Driver=string(), Options=STRING_MAP,
                Config=array(struct("network.IPAMConfig", Subnet=string(), IPRange=string(), Gateway=string(),
                                    AuxiliaryAddresses=STRING_MAP))),
    Internal=boolean(), Attachable=boolean(), Ingress=boolean(), ConfigOnly=boolean(),
    ConfigFrom=struct("network.ConfigReference", Network=string()),
    Options=STRING_MAP, Labels=STRING_MAP, CheckDuplicate=boolean(),
)  # fmt: skip

NETWORK_CONNECT = struct("network.ConnectOptions", Container=string(), EndpointConfig=ENDPOINT_SETTINGS)

NETWORK_DISCONNECT = struct("network.DisconnectOptions", Container=string(), Force=boolean())

VOLUME_CREATE = struct("volume.CreateOptions", Name=string(), Driver=string(), DriverOpts=STRING_MAP,
                       Labels=STRING_MAP)  # fmt: skip

AUTH_CONFIG = struct(
    "registry.AuthConfig",
    username=string(), password=string(), auth=string(), email=string(), serveraddress=string(),
    identitytoken=string(), registrytoken=string(),
)  # fmt: skip

# POST /containers/{id}/checkpoints; TCPEstablished is Dockyard's (a live move keeps connections)
CHECKPOINT_CREATE = struct(
    "checkpoint.CreateOptions", CheckpointID=string(), CheckpointDir=string(), Exit=boolean(),
    TCPEstablished=boolean(),
)  # fmt: skip

# POST /dockyard/layers/missing (a move asks its target which layers to send)
MISSING_LAYERS = struct("dockyard.MissingLayers", DiffIDs=STRINGS)

# Swarm mode's requests: their shapes are checked by the cluster's own spec validation
# (cluster/specs.py and friends); here only "a JSON object" is, as for any body.
SWARM_INIT = struct("swarm.InitRequest")
SWARM_JOIN = struct("swarm.JoinRequest")
SWARM_SPEC = struct("swarm.Spec")
NODE_SPEC = struct("swarm.NodeSpec")
SERVICE_SPEC = struct("swarm.ServiceSpec")
SECRET_SPEC = struct("swarm.SecretSpec")
CONFIG_SPEC = struct("swarm.ConfigSpec")
# the move journal's routes (api/routes/move.py): a source's journal, its resolution, and
# the target's `move` event with the CLI's figures
MOVE_LEAVE = struct("dockyard.MoveLeave", ID=string(), To=string(), Live=boolean(), Checkpoint=string(),
                    WithVolumes=boolean())  # fmt: skip
MOVE_RESOLVE = struct("dockyard.MoveResolve", Outcome=string(), Attributes=STRING_MAP, Later=boolean())
MOVE_ARRIVED = struct("dockyard.MoveArrived", Attributes=STRING_MAP)
