"""`netplane explain`: what the proxy does to a packet, in any mode.

    packet.py       the packet asked about (SRC DST:PORT/PROTO), checked
    compiled.py     --manifests: the mode's fake kernel, programmed by a compile
    live.py         the live kernel read into the same form (all four modes)
    live_ebpf.py    the eBPF mode's pinned maps, read-only (nothing loaded or attached)
    live_ipvs.py    the IPVS mode's own virtual servers (an admin's are left out)
    kernel.py       one family's state of a mode, and the mode's tracer over it
    names.py        which Service (and which of its frontends) the packet hit, or which are on its address
    explanation.py  the answer as a value (and --json), with the exit code
    words.py        the answer in words
    command.py      the command's steps

The tracers are the semantic suite's (netplane/testing/), so what explain
says is what the suite checks for every mode.
"""
