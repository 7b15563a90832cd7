"""Ray clusters raysum runs on: a multi-node cluster on this machine (`raysum cluster up`);
cloud clusters are Ray's own launchers, configured by the files in `clusters/`."""

from raysum.cluster.local import LocalCluster, LocalNode, down, stop_node, up, worker_names

__all__ = ["LocalCluster", "LocalNode", "up", "down", "stop_node", "worker_names"]
