"""The names of everything the nftables mode owns, and the shapes of its maps.

One table per family, `ip netplane` and `ip6 netplane`: nothing outside it
is touched, and cleanup is deleting it. Static objects (maps, sets, base
and fixed chains) are named here; the shared pick chains are named by their
shape (`cluster-3`: the cluster-IP path over 3 endpoints), and the few
per-port objects (ClientIP affinity only) by a hash of the port, as
kube-proxy names its per-service chains.
"""
import base64
import hashlib

TABLE = "netplane"
FAMILY = {4: "ip", 6: "ip6"}          # the nft family and the address match keyword, both
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
LOOPBACK = {4: "127.0.0.0/8", 6: "::1"}

# maps: the nat dispatch, and the endpoints behind it by slot
SERVICE_IPS = "service-ips"                    # daddr . proto . port : verdict (cluster, external, LB IPs)
SERVICE_NODEPORTS = "service-nodeports"        # proto . port : verdict
# The endpoints, one map per kind and protocol (backends(kind, proto)):
#   backends-tcp                   daddr . port . slot : endpoint
#   shortcut-backends-tcp          the same, for pods and the node under a Local policy
#   nodeport-backends-tcp          port . slot : endpoint
#   nodeport-shortcut-backends-tcp
# Per protocol because a DNAT to a port needs its protocol known, and nft
# 1.0.6 cannot read back a map typed `th dport` ("conflicting protocols
# specified: ip vs. th" on every later transaction that adds a rule using
# it); typed `tcp dport`, a map serves TCP only, and nft adds the
# `meta l4proto tcp` match itself.
BACKEND_KINDS = ("backends", "shortcut-backends", "nodeport-backends", "nodeport-shortcut-backends")
PROTOCOLS = ("tcp", "udp", "sctp")
# the filter side: refusals, the firewall, and who gets masqueraded back to itself
NO_ENDPOINT_SERVICES = "no-endpoint-services"  # daddr . proto . port : goto reject-chain / drop
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
FIREWALL = "firewall-ips"                      # daddr . proto . port : goto the port's fw chain (source ranges)
CLUSTER_IPS = "cluster-ips"                    # every cluster IP: other ports are rejected
HAIRPIN = "hairpin"                            # ep . ep: an endpoint sent back to itself is masqueraded
NODEPORT_IPS = "nodeport-ips"                  # where node ports answer, when not every local address

# fixed chains
SERVICES, MASQUERADING, MARK_MASQ = "services", "masquerading", "mark-for-masquerade"
SERVICE_CHECK, NODEPORT_CHECK, CLUSTER_IPS_CHECK = "service-endpoints-check", "nodeport-endpoints-check", "cluster-ips-check"
FIREWALL_CHECK, FORWARD, REJECT_CHAIN = "firewall-check", "forward", "reject-chain"

# verdicts for traffic without endpoints (a verdict map can only goto a chain that rejects)
REJECT_VERDICT, DROP_VERDICT = f"goto {REJECT_CHAIN}", "drop"

HASH_CHARS = 16


def backends(kind: str, proto: str) -> str:
    return f"{kind}-{proto}"


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:HASH_CHARS].decode().lower()


def port_chain(kind: str, port_key: str) -> str:
    """A per-port chain: svc, ext, pick-c or pick-l (affinity ports), fw (source ranges)."""
    return f"{kind}-{_hash(port_key)}"


def endpoint_chain(port_key: str, endpoint: str) -> str:
    return f"ep-{_hash(port_key + '/' + endpoint)}"


def affinity_set(port_key: str, endpoint: str) -> str:
    """The clients recently sent to one endpoint of one port (its dynamic set)."""
    return f"aff-{_hash(port_key + '/' + endpoint)}"
