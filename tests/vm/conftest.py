"""VM tier: tests that need a kernel this machine lacks (IPVS). They run
inside the VM netplane.vm boots (Debian 12's 6.1 kernel, this machine's
files): `make test-vm` boots one and runs `pytest -m vm tests/vm` in it.

Anywhere else they are skipped, not failed: the host tiers run with
`-m "not vm"`, and a bare `pytest tests/vm` here says why it skipped. The
VM is told apart by the variable the runner sets (netplane.vm.in_vm()),
not by the kernel alone, since these tests load modules and expect a
machine of their own. Inside, each test still builds throwaway network
namespaces, and tests/conftest.py's guard checks the guest's own namespace.
"""
import pytest

from netplane import vm


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if "tests/vm/" in str(item.fspath)]
    if ours and vm.in_vm() and not vm.kernel_has_ipvs():
        # a VM whose kernel lacks IPVS would skip the whole tier unseen
        raise pytest.UsageError("in the VM, but its kernel has no IPVS: see netplane/vm.py")
    for item in ours:
        item.add_marker(pytest.mark.vm)
        if not vm.in_vm():
            item.add_marker(pytest.mark.skip(reason="runs in the VM netplane.vm boots: make test-vm"))
