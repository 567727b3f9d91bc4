"""The service proxy (kube-proxy replacement).

    Service + EndpointSlice objects --objects.py--> model (frozen dataclasses)
        --topology.categorize()--> the endpoints each traffic path may use,
    computed once for every backend (iptables, nftables, ipvs, ebpf).
"""
