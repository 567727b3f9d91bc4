"""Reading our table back over netlink, without nft.

nft (the binary and libnftables alike, 1.0.6) fills its cache before any
listing that shows rules, and the cache holds every set's elements:
`list table ip netplane` or `list chain ...` takes 1.2 s at 10k Services,
and `list tables` reads every table of the family, rules and all (3 s
beside 80k iptables-nft rules). The drift check runs before every partial
sync, so it asks the kernel directly: a GETRULE dump filtered to each base
chain (about 0.15 ms each).
"""
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nftsocket import (NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFTSocket,
                                                  nft_chain_msg, nft_rule_msg, nft_set_msg)

from netplane.proxy.nftables.names import TABLE

NFPROTO = {4: 2, 6: 10}             # NFPROTO_IPV4, NFPROTO_IPV6
ENOENT = 2


class NetlinkReader:
    def __init__(self, family: int, table: str = TABLE) -> None:
        self.nfproto, self.table = NFPROTO[family], table
        self._sock = None

    def rule_count(self, chain: str) -> int:
        """Rules in one of our chains: 0 when it is empty, or gone (with the table or not)."""
        return len(self._get(nft_rule_msg, NFT_MSG_GETRULE, [("NFTA_RULE_TABLE", self.table), ("NFTA_RULE_CHAIN", chain)]))

    def names(self) -> dict[str, set[str]] | None:
        """Our table's chains and sets (full syncs only: the chain dump covers
        the family's every table); None when the table is gone."""
        chains = {m.get_attr("NFTA_CHAIN_NAME") for m in self._get(nft_chain_msg, NFT_MSG_GETCHAIN, [])
                  if m.get_attr("NFTA_CHAIN_TABLE") == self.table}
        try:
            # not the anonymous sets (__set0, __map1) the kernel keeps for rules' `{ ... }`:
            # they go with their rules, and deleting one a rule uses fails (EBUSY)
            sets = {m.get_attr("NFTA_SET_NAME") for m in self._get(nft_set_msg, NFT_MSG_GETSET,
                                                                    [("NFTA_SET_TABLE", self.table)])
                    if not m.get_attr("NFTA_SET_NAME").startswith("__")}
        except NetlinkError as err:
            if err.code == ENOENT:
                return None
            raise
        return {"chains": chains, "sets": sets}

    def _get(self, kind, message: int, attrs: list) -> list:
        """A dump of `message` filtered by `attrs`, as messages."""
        if self._sock is None:
            self._sock = NFTSocket(nfgen_family=self.nfproto)
        msg = kind()
        msg["nfgen_family"] = self.nfproto
        msg["attrs"] = attrs
        return list(self._sock.request_get(msg, message, NLM_F_REQUEST | NLM_F_DUMP))
