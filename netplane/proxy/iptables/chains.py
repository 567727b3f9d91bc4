"""Chain names. Every chain netplane owns starts with NP- so cleanup can
find them all and nothing of kube-proxy's (KUBE-) or the admin's is touched.

Per-service chains are named by a hash of the service port (and endpoint),
like kube-proxy's: stable across restarts and syncs, so unchanged services
keep their chains, and short enough for iptables' 28-character limit.
"""
import base64
import hashlib

PREFIX = "NP-"

# top-level chains, rewritten as a whole when their content changes
NAT_SERVICES = "NP-SERVICES"
NAT_NODEPORTS = "NP-NODEPORTS"
FILTER_SERVICES = "NP-SERVICES"
FILTER_EXTERNAL = "NP-EXTERNAL-SERVICES"
FILTER_FIREWALL = "NP-PROXY-FIREWALL"

# static chains, written on full syncs
MARK_MASQ = "NP-MARK-MASQ"
POSTROUTING = "NP-POSTROUTING"
FORWARD = "NP-FORWARD"
CANARY = "NP-PROXY-CANARY"      # an empty chain, kept for tools that look for it
# kube-proxy's KUBE-FIREWALL: with localhost node ports (route_localnet=1),
# drops what reaches 127.0.0.0/8 from outside the node; empty otherwise
LOCALNET_FIREWALL = "NP-FIREWALL"

# Drift: chains that always hold rules once a sync is in. If one is gone, or
# empty, someone deleted or flushed the table behind our back (`iptables -t
# nat -F` empties every chain but leaves them defined, which an empty canary
# would survive), and the next sync must be a full one.
SENTINELS = (("filter", FORWARD), ("nat", POSTROUTING))


# where the built-in chains jump into ours: (table, built-in chain, rule)
JUMPS = (
    ("filter", "INPUT", f'-m conntrack --ctstate NEW -m comment --comment "netplane load balancer firewall" -j {FILTER_FIREWALL}'),
    ("filter", "INPUT", f'-m conntrack --ctstate NEW -m comment --comment "netplane external services" -j {FILTER_EXTERNAL}'),
    ("filter", "FORWARD", f'-m conntrack --ctstate NEW -m comment --comment "netplane load balancer firewall" -j {FILTER_FIREWALL}'),
    ("filter", "FORWARD", f'-m comment --comment "netplane forwarding rules" -j {FORWARD}'),
    ("filter", "FORWARD", f'-m conntrack --ctstate NEW -m comment --comment "netplane service portals" -j {FILTER_SERVICES}'),
    ("filter", "FORWARD", f'-m conntrack --ctstate NEW -m comment --comment "netplane external services" -j {FILTER_EXTERNAL}'),
    ("filter", "OUTPUT", f'-m conntrack --ctstate NEW -m comment --comment "netplane load balancer firewall" -j {FILTER_FIREWALL}'),
    ("filter", "OUTPUT", f'-m conntrack --ctstate NEW -m comment --comment "netplane service portals" -j {FILTER_SERVICES}'),
    ("filter", "INPUT", f'-m comment --comment "netplane localnet firewall" -j {LOCALNET_FIREWALL}'),
    ("filter", "OUTPUT", f'-m comment --comment "netplane localnet firewall" -j {LOCALNET_FIREWALL}'),
    ("nat", "PREROUTING", f'-m comment --comment "netplane service portals" -j {NAT_SERVICES}'),
    ("nat", "OUTPUT", f'-m comment --comment "netplane service portals" -j {NAT_SERVICES}'),
    ("nat", "POSTROUTING", f'-m comment --comment "netplane postrouting rules" -j {POSTROUTING}'),
)


HASH_CHARS = 16
# a service port's chains: cluster policy, local policy, external traffic, source ranges;
# and an endpoint's. The compiled generator takes these prefixes from here.
SVC, SVL, EXT, FW, SEP = (f"{PREFIX}{kind}-" for kind in ("SVC", "SVL", "EXT", "FW", "SEP"))


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:HASH_CHARS].decode()


def service_chain(prefix: str, port_key: str) -> str:
    """prefix: SVC, SVL, EXT or FW."""
    return f"{prefix}{_hash(port_key)}"


def endpoint_chain(port_key: str, endpoint: str) -> str:
    return f"{SEP}{_hash(port_key + '/' + endpoint)}"
