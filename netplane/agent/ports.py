"""Where the agent serves /healthz and /metrics by default.

Clear of what already listens on a node: kubelet (10248, 10250, 10255),
kube-proxy and netplane proxy (10249, 10256), the control plane (10257,
10258, 10259), Calico Felix (9099, 9091) and Cilium (9879, 9962, 9890).
Health on every address, as kube-proxy's, for a DaemonSet's probe on the
host network; metrics on loopback unless an operator opens them.
(Kept apart from observe.py so the CLI's flags do not import prometheus_client.)
"""
DEFAULT_HEALTHZ_ADDRESS = "0.0.0.0:10266"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:10265"
