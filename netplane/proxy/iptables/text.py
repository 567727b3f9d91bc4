"""Assembling a transaction from the ports' PortRules: the top-level
chains, and the iptables-restore input as a list of pieces. The pieces are
the ports' own strings, not copies: the apply step streams them to
iptables-restore, so a full sync never holds its text twice.

ext/iptables_text.pyx is the compiled twin and must give byte-identical
results. Both are pure: strings in, strings out.
"""
SHARES = 5          # PortRules' first five fields: the ports' shares of the top-level chains


def top_level(fragments: list) -> tuple[str, ...]:
    """Each top-level chain's port rules, ports in the order given."""
    return tuple("".join([f[i] for f in fragments]) for i in range(SHARES))


def transaction(tables: dict[str, dict[str, str]], ports: list, deleted: dict[str, list[str]],
                edits: dict[str, list[str]] | None = None) -> list[str]:
    """iptables-restore --noflush input, in pieces ([] = nothing to do). Per table: declare (and so flush)
    the chains it writes and deletes, fill the written ones, edit others
    rule by rule, delete the leftovers. It writes the whole chains in
    `tables` (table -> chain -> rules) and, in the nat table, the chains
    each PortRules in `ports` owns; `edits` (table -> -D/-I lines) come
    after the new chains exist and before the old ones go."""
    out = []
    for table in ("filter", "nat"):
        chains, gone = tables.get(table, {}), deleted.get(table, [])
        own = ports if table == "nat" else []
        changes = edits.get(table, []) if edits else []
        if not chains and not gone and not changes and not any(f.declarations for f in own):
            continue
        out.append(f"*{table}\n")
        out += [f":{name} - [0:0]\n" for name in chains]
        out += [f.declarations for f in own]
        out += [f":{name} - [0:0]\n" for name in gone]
        out += chains.values()
        out += [f.rules for f in own]
        out += changes
        out += [f"-X {name}\n" for name in gone]
        out.append("COMMIT\n")
    return out
