"""The service proxy (kube-proxy replacement).

    source changes --tracker.py--> changed service ports --policy.py--> PortPolicy per family
        --a mode's compile--> plan --its applier--> kernel      (dataplane.py drives the last two)

Every decision about Service semantics is made once, in policy.py (with
topology.py), for every mode (iptables, and nftables, ipvs, ebpf to come).
"""
