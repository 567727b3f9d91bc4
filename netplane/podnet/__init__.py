"""The pod network across nodes: each node's pod CIDR reachable from every other node.

    sources (file | Kubernetes API) --> model.Node objects
        --> a mode (vxlan | routed) plans the desired kernel state, purely
        --> diff.changes(desired, observed) orders the edits
        --> kernel.apply() hands them to netlink; controller.py loops.
"""
