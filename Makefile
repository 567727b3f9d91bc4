# The README's two commands are `make lab` and `make test`; every target
# bootstraps first, so each one works on a fresh machine.
VENV := .venv
PYTEST := $(VENV)/bin/pytest

.PHONY: setup lab demo lint test test-unit test-kernel test-vm bench lock clean

setup:
	scripts/bootstrap

lab: setup
	$(VENV)/bin/netplane lab run

demo: setup
	$(VENV)/bin/netplane demo

# ruff's small rule set (pyproject.toml), then the unit (no root) and
# kernel (root, throwaway namespaces) tiers, then the vm tier
lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PYTEST) -m "not vm"
	$(VM_TIER)

test-unit: setup
	$(PYTEST) tests/unit

test-kernel: setup
	$(PYTEST) -m kernel

# The vm tier: one VM with Debian 12's 6.1 kernel (IPVS), booted with
# virtme-ng (netplane/vm.py), runs tests/vm and the kernel tier's proxy
# tests in the ipvs mode (the same paths as every mode's on this kernel).
# The guest sees the tree read-only; its JUnit report comes back in build/vm/.
VM_TIER = $(VENV)/bin/python -m netplane.vm --timeout 2400 --rwdir build/vm -- \
	$(PYTEST) -m "vm or kernel" -k "vm_smoke or ipvs" tests/vm tests/kernel/test_proxy.py \
	-p no:cacheprovider --junitxml=build/vm/junit.xml

test-vm: setup
	$(VM_TIER)

bench: setup
	$(VENV)/bin/netplane bench proxy --out benchmarks/results/bench_proxy
	$(VENV)/bin/python benchmarks/cni_latency.py
	$(VENV)/bin/python benchmarks/proxy_start.py
	$(VENV)/bin/python benchmarks/pod_network_throughput.py
	$(VENV)/bin/python benchmarks/proxy_iptables.py
	$(VENV)/bin/python benchmarks/proxy_compile.py
	$(VENV)/bin/python benchmarks/proxy_programming.py --mode iptables,nftables
	$(VENV)/bin/python benchmarks/proxy_first_packet.py
	$(VENV)/bin/python benchmarks/proxy_nodeport.py
	$(VENV)/bin/python -m netplane.bench.throughput
	$(VENV)/bin/python -m netplane.bench.maglev
	$(VENV)/bin/python -m netplane.bench.maglev_daemon
	$(VENV)/bin/python -m netplane.bench.full_sync_encode
	$(VENV)/bin/python -m netplane.bench.in_vm

# remake requirements.lock from pyproject.toml's ranges (README, "Dependencies")
lock:
	scripts/lock

clean:
	rm -rf build $(VENV) netplane/_ext/*.so netplane/_ext/*.c ext/*.c
