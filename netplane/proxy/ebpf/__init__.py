"""The eBPF mode: socket-level load balancing in cgroup programs (bpf/sock_lb.c)."""
