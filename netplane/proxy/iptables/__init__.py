"""iptables mode: kube-proxy's iptables semantics, compiled to one
`iptables-restore --noflush` transaction per family and sync.

    rules.py    one PortPolicy -> its rules (pure; ext/iptables_rules.pyx is its twin)
    text.py     top-level chains and the transaction's pieces (pure; ext/iptables_text.pyx)
    compile.py  all ports -> the plan, full or partial (pure)
    restore.py  running iptables-restore / -save, base-chain jumps, sentinels
    mode.py     options, context, applier; registers the mode
"""
