"""`netplane explain --manifests`: the state a compile of those manifests
would install, held by the mode's fake kernel. The path is the proxy's
own (the manifests read by the ManifestDir its source watches -> snapshot
-> policies, as daemon.compile_plan), then the mode's harness programs its
fake kernel through the real applier."""
import logging

from netplane import testing
from netplane.errors import OperatorError
from netplane.explain.kernel import Kernel
from netplane.kube import manifests
from netplane.proxy import daemon
from netplane.proxy.manifest_source import ManifestDir
from netplane.proxy.nftables.names import FAMILY
from netplane.proxy.policy import family_policies
from netplane.proxy.state import snapshot

log = logging.getLogger("netplane.explain")
LOOPBACK = ("127.0.0.1", "::1")


def kernel(cfg, checked, family: int) -> tuple[Kernel, dict]:
    """(the family's Kernel, its policies: PortName -> PortPolicy)."""
    settings = daemon.settings(cfg, checked)
    if family not in settings.families:
        raise OperatorError(f"the proxy serves IPv{'/IPv'.join(map(str, settings.families))} here "
                            f"(its --node-ip), not IPv{family}")
    services, slices = _objects(cfg)
    snap = snapshot(services, slices)
    for what, why in sorted(snap.skipped.items()):
        log.warning("skipping %s: %s", what, why)
    policies = {f: family_policies(snap.ports, f, settings.node) for f in settings.families}
    local = tuple(str(ip) for ip in settings.node_ips) + LOOPBACK
    name = f"iptables/{cfg.mode_options['iptables'].layout}" if cfg.mode == "iptables" else cfg.mode
    if name not in testing.names():
        raise OperatorError(f"netplane explain does not know the {cfg.mode} mode")
    programmed = testing.get(name).program(settings, policies, local)
    return _held(cfg.mode, family, programmed, local, settings), policies[family]


def _objects(cfg) -> tuple[list[dict], list[dict]]:
    """The Services and EndpointSlices of the manifests, read once. A file
    that does not parse is bad input: a one-shot has no last good objects to
    keep (as the watching proxy does), and explaining without it would
    answer about other Services than the operator's."""
    found = ManifestDir(cfg.manifests, report=False)     # not the watcher's lines: what is wrong is said here, once
    found.scan()
    unreadable = [why for why in map(_unparsable, sorted(found.errors)) if why]
    if unreadable:
        raise OperatorError(f"cannot read the manifests: {'; '.join(unreadable)}")
    for why in sorted(found.errors.values()):
        log.warning("manifests: %s", why)     # a bad item of a List: skipped, the file's others count
    return found.objects("Service"), found.objects("EndpointSlice")


def _unparsable(path: str) -> str | None:
    """Why the file fails as a whole (not only some of its items), or None."""
    try:
        manifests.load_file(path, [])
    except manifests.ManifestError as err:
        return str(err)
    return None


def _held(mode: str, family: int, programmed, local: tuple, settings) -> Kernel:
    """What the harness's fake kernel holds, as a Kernel."""
    held = programmed.kernel[family]
    if mode == "iptables":
        return Kernel(mode, family, held.tables, local)
    if mode == "nftables":
        return Kernel(mode, family, held.tables[FAMILY[family]], local)
    if mode == "ebpf":
        return Kernel(mode, family, held, local, settings.cluster_cidrs)
    # ipvs: the nftables table around IPVS, the virtual servers, and np-ipvs0's addresses are local too
    return Kernel(mode, family, (held.nft.tables[FAMILY[family]], held.kernel),
                  local + tuple(sorted(held.device.addresses(family))))
