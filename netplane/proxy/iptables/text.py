"""Assembling a transaction's text from the ports' PortRules: the
top-level chains, the nat table's port chains, and iptables-restore input.

ext/iptables_text.pyx is the compiled twin and must give byte-identical
results. Both are pure: strings in, strings out.
"""
SHARES = 5          # PortRules' first five fields: the ports' shares of the top-level chains


def top_level(fragments: list) -> tuple[str, ...]:
    """Each top-level chain's port rules, ports in the order given."""
    return tuple("".join([f[i] for f in fragments]) for i in range(SHARES))


def add_chains(nat: dict[str, str], fragments: list) -> None:
    """Every port's own chains into the nat table, ports in the order given."""
    for f in fragments:
        nat.update(f.chains)


def render(tables: dict[str, dict[str, str]], written: dict[str, list[str]],
           deleted: dict[str, list[str]]) -> str:
    """iptables-restore --noflush input: per table, declare (and so flush)
    the written and deleted chains, fill the written ones, delete the others."""
    out = []
    for table in ("filter", "nat"):
        if not written[table] and not deleted[table]:
            continue
        out.append(f"*{table}\n")
        out += [f":{name} - [0:0]\n" for name in written[table] + deleted[table]]
        out += [tables[table][name] for name in written[table]]
        out += [f"-X {name}\n" for name in deleted[table]]
        out.append("COMMIT\n")
    return "".join(out)
