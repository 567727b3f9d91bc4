"""What `netplane bench proxy` measures, one Metric each, in the order the
report shows them. A metric is either the proxy's own (only subjects that run
a proxy have it) or the data path's (the floor, no proxy at all, has it too,
and the ratio to the floor is the price of the proxy on that path)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str           # the samples' "metric"
    title: str         # a plot's title, a table's heading
    unit: str
    short: str         # the terminal table's row label
    higher_is_better: bool = False
    data_path: bool = False          # measured without a proxy too (the floor)
    tail: bool = False               # p99 is reported beside p50


METRICS = (
    Metric("full_sync_s", "full sync into the kernel", "s", "full sync, s"),
    Metric("change_ms", "programming latency, one endpoint change", "ms", "endpoint change, ms", tail=True),
    Metric("vip_first_us", "first packet, ClusterIP from a pod", "µs", "1st packet ClusterIP, µs", data_path=True, tail=True),
    Metric("nodeport_first_us", "first packet, NodePort from outside", "µs", "1st packet NodePort, µs", data_path=True, tail=True),
    Metric("conn_rate", "new connections per second through a VIP", "conn/s", "new conn/s via VIP", higher_is_better=True,
           data_path=True),
    Metric("throughput_gbps", "one TCP stream through a VIP (iperf3)", "Gbit/s", "1 stream via VIP, Gbit/s", higher_is_better=True,
           data_path=True),
    Metric("rss_mb", "proxy RSS after the run", "MiB", "proxy RSS, MiB"),
    Metric("churn_cpu_s", "proxy CPU during a burst of churn", "s", "churn CPU, s"),
)
BY_KEY = {m.key: m for m in METRICS}
