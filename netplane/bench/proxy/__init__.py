"""`netplane bench proxy`: every proxy mode side by side on this node, with
kube-proxy's iptables layout and no proxy at all as references.

The flow, one module each:
- command: the CLI's options, checked in one line each; which modes run
  here and which in the VM (netplane/vm.py) for a kernel that lacks them;
- subjects: what runs (a mode, or a reference) and where (host or vm);
- cluster: the manifests for N Services (pure);
- testbed: the throwaway lab (two nodes, an external client) and the proxy
  under test on node1; client: the process in a pod that connects;
- steps: the measurements, each checking that its answers came from the
  Service's pod; evidence: what the node's kernel held (the subject's
  mode, and no other);
- runner: sizes, rounds (the subjects' order rotating), caps, and the raw
  samples; stats: p50, p99 and spread over rounds (pure);
- report: the terminal table, markdown and plots; compare: two runs.
"""
