"""iptables mode: kube-proxy's iptables semantics, compiled to one
`iptables-restore --noflush` transaction per family and sync.

    rules.py    one service port -> its rules (pure)
    compile.py  all ports -> the restore text, full or partial (pure)
    restore.py  running iptables-restore / -save, base-chain jumps, canary
    backend.py  the Backend: compile, apply, remember, clean up
"""
