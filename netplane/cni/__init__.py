"""The CNI plugin: per-pod addresses from the node's pod CIDR, and the wiring.

Theory of operation. A runtime execs the plugin once per pod with the
CNI_* environment and a network config on stdin. The executable it finds
is shim.py: a thin client that hands the request to the node agent
(server.py) and relays the answer, or execs standalone.py when no agent
runs. Either way the request lands in plugin.run(), which validates
everything first (invocation.py, config.py; nothing touches the disk
before that), then dispatches the verb:

- lifecycle.py  ADD (ipam/ takes addresses, wiring.py wires the pod) and
                DEL (reaper.py defers the kernel's slow part on the agent path);
- check.py      CHECK against prevResult;
- housekeeping.py  GC and STATUS.

result.py prints the answer in the version the config asked for, and
errors.py holds the codes. Every name the kernel sees is derived from the
attachment key, so a later verb finds everything again without records.
"""
