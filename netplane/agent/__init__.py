"""The netplane node agent: one long-running process per node.

Each job the agent does lives in its own module; today that is serving the
CNI fast path (netplane.cni.server) and publishing the node state file the
plugin reads. Connecting the pod networks of all nodes joins them later.
"""
