"""The lab: a cluster of nodes and pods built from network namespaces on one machine."""
from netplane.lab.lab import Lab, LabError

__all__ = ["Lab", "LabError"]
