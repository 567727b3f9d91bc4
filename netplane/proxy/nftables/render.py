"""A Transaction as an nft script: one atomic `nft -f` input.

The elements are nearly all of it at scale (110k of them at 10k Services
with 10 endpoints), so their text is made by elements_text(), which
ext/nftables_text.pyx renders byte for byte the same, faster. Keys and
values are tuples of str and int parts, joined with " . "; a value may
also be a verdict string, or None in a set.
"""
from netplane import fastpath
from netplane.proxy.nftables.names import FAMILY
from netplane.proxy.nftables.plan import Transaction

_fast = None


def elements_text(items) -> str:
    """`k : v, k : v` for (key, value) pairs (`k, k` where the value is None)."""
    return ", ".join(_element(key, value) for key, value in items)


def keys_text(keys) -> str:
    return ", ".join(" . ".join(map(str, key)) for key in keys)


def _element(key: tuple, value) -> str:
    text = " . ".join(map(str, key))
    if value is None:
        return text
    if type(value) is str:
        return f"{text} : {value}"
    return f"{text} : {' . '.join(map(str, value))}"


def script(tx: Transaction) -> str:
    fast = _renderer()
    at = f"{FAMILY[tx.family]} {tx.table}"
    out = [f"add table {at}\n"]
    for name, (kind, hook, priority) in tx.base_chains.items():
        out.append(f"add chain {at} {name} {{ type {kind} hook {hook} priority {priority}; policy accept; }}\n")
    for name, body in tx.sets.items():
        out.append(f"add {'map' if ' : ' in body else 'set'} {at} {name} {{ {body} }}\n")
    for name in tx.flush_sets:
        out.append(f"flush {'map' if ' : ' in tx.sets.get(name, '') else 'set'} {at} {name}\n")
    for m, keys in tx.delete_elements.items():
        if keys:
            out.append(f"delete element {at} {m} {{ {fast.keys_text(keys)} }}\n")
    # every chain exists before any rule jumps to it
    out += [f"add chain {at} {chain}\n" for chain in tx.chains if chain not in tx.base_chains]
    for chain in tx.chains:
        out.append(f"flush chain {at} {chain}\n")
        out += [f"add rule {at} {chain} {rule}\n" for rule in tx.rules[chain]]
    for chain in tx.flush_chains:
        out.append(f"flush chain {at} {chain}\n")
    for m, items in tx.add_elements.items():
        if items:
            out.append(f"add element {at} {m} {{ {fast.elements_text(items)} }}\n")
    out += [f"delete chain {at} {chain}\n" for chain in tx.delete_chains]
    out += [f"delete set {at} {s}\n" for s in tx.delete_sets]
    return "".join(out)


def _renderer():
    global _fast
    if _fast is None:
        _fast = fastpath.load("nftables_text")
    return _fast
