"""A plan as text a person reads (`netplane compile`): the IPVS changes as
`ipvsadm --restore` input, then the nftables transaction as `nft -f`
input. The kernel gets neither text: the applier sends netlink messages.
"""
from netplane.proxy.ipvs.plan import FWMARK, Changes, Key, VirtualServer, endpoint
from netplane.proxy.nftables import render as nft

OPTION = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service", FWMARK: "-f"}


def service(key: Key) -> str:
    if key.protocol == FWMARK:
        return f"-f {key.port:#x}"
    return f"{OPTION[key.protocol]} {endpoint(key.address, key.port)}"


def server_line(verb: str, key: Key, server: VirtualServer) -> str:
    persistent = f" -p {server.timeout}" if server.timeout else ""
    return f"{verb} {service(key)} -s {server.scheduler}{persistent}"


def dest_line(op: str, key: Key, dest, weight: int) -> str:
    verb = {"add": "-a", "set": "-e", "delete": "-d"}[op]
    tail = "" if op == "delete" else f" -m -w {weight}"
    return f"{verb} {service(key)} -r {endpoint(*dest)}{tail}"


def text(changes: Changes) -> str:
    lines = [f"# ipvsadm --restore (IPv{changes.family})"]
    lines += [f"# np-ipvs0: add {a}" for a in changes.add_addresses]
    lines += [server_line("-A", k, s) for k, s in changes.add_servers]
    lines += [server_line("-E", k, s) for k, s in changes.edit_servers]
    lines += [dest_line(op, k, d, w) for op, k, d, w in changes.dests]
    lines += [f"-D {service(k)}" for k in changes.delete_servers]
    lines += [f"# np-ipvs0: delete {a}" for a in changes.delete_addresses]
    return "\n".join(lines) + "\n# nft -f -\n" + nft.script(changes.nft)
