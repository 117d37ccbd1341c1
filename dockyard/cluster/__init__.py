"""Cluster mode: the etcd-backed control plane (store client, CA, tokens, nodes,
services, scheduler, agent)."""
