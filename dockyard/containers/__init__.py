"""Containers: records, the state machine, lifecycle, logs, attach, exec."""
