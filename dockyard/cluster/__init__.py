"""Cluster mode: the etcd-backed control plane.

kv (store client), member (supervised etcd), ca (cluster CA), tokens (join tokens), state
(key layout), swarm (membership, nodes), join (the :2377 endpoint), specs (service specs),
services (services, tasks, secrets, configs), scheduler (leader loop), agent (node side),
seal (secrets at rest).
"""

__all__: list[str] = []
