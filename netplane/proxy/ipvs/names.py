"""The names of what the IPVS mode owns.

- The dummy device `np-ipvs0` holds every cluster, external and
  load-balancer IP, so that the kernel delivers their packets locally,
  where IPVS picks them up (at LOCAL_IN, and at LOCAL_OUT for the node's
  own sockets).
- The nftables table `netplane-ipvs` (one per family) holds the few rules
  around IPVS and their sets (static.py). It is its own table, so that a
  switch to or from the nftables mode never touches the other's rules.
- Firewall marks `MARK_TAG | n` name the short-circuit virtual servers of
  externalTrafficPolicy Local ports (entries.py); a full sync recognises
  such a virtual server as ours by the tag.
"""
DEVICE = "np-ipvs0"
TABLE = "netplane-ipvs"

MARK_TAG, MARK_MASK = 0x4E500000, 0xFFF00000       # "NP" in the top 12 bits
MARK_IDS = 0xFFFFF                                 # ids 1..MARK_IDS below the tag

# sets keyed `daddr . l4proto . dport` (VIP) unless said otherwise
CLUSTER_VIPS = "cluster-vips"        # cluster IPs with endpoints: off-cluster sources are masqueraded
EXTERNAL_VIPS = "external-vips"      # external addresses and node ports, policy Cluster: always masqueraded
SHORTCUT = "local-shortcut"          # VIP : firewall mark, policy Local: pods and the node reach every endpoint
SERVED = "served"                    # every VIP with a virtual server (other ports on np-ipvs0 are refused)
NODEPORT_SERVERS = "nodeport-servers"  # the node-port virtual servers: how a full sync knows them as ours
NO_ENDPOINTS = "no-endpoints"        # VIP : verdict (REJECT, or DROP under a Local policy)
FIREWALL = "firewall"                # load-balancer IPs with loadBalancerSourceRanges
FIREWALL_ALLOW = "firewall-allow"    # VIP . source range: the sources they allow
HAIRPIN = "hairpin"                  # ep . ep: an endpoint reaching itself through its Service
ADDRESSES = "addresses"              # np-ipvs0's addresses

# chains
PREROUTING, OUTPUT, INPUT, POSTROUTING = "prerouting", "output", "input", "postrouting"
MARK, REJECT_CHAIN = "classify", "reject-chain"
REJECT_VERDICT, DROP_VERDICT = f"goto {REJECT_CHAIN}", "drop"
