"""GC and STATUS: the two verbs that concern the network, not one pod."""
import logging

from netplane.cni import wiring
from netplane.cni.config import GC_KEYS, NetConf
from netplane.cni.errors import INTERNAL, INVALID_CONFIG, NOT_AVAILABLE, CniError
from netplane.cni.ipam import allocator
from netplane.cni.lifecycle import network, store_for
from netplane.netlink.channel import Channel

log = logging.getLogger("netplane.cni")


def gc(conf: NetConf) -> None:
    """Release every attachment the runtime no longer lists as valid.

    An absent list is refused rather than read as "nothing is valid": that
    reading would wipe every pod's reservation on one malformed request.
    Stale veths are deleted too, in case their namespace outlived the pod.
    """
    if conf.valid_attachments is None:
        raise CniError(INVALID_CONFIG, "GC needs the list of valid attachments",
                       f"missing key {GC_KEYS[0]!r}")
    store = store_for(conf)
    stale = allocator.stale_attachments(store, conf.valid_attachments)
    failures = []
    with Channel.open() as node:
        for owner in stale:
            # As in DEL: the link goes before its addresses are free again.
            try:
                wiring.detach(wiring.host_ifname(owner), node)
            except OSError as exc:  # keep going: clean as much as we can
                failures.append(f"{owner.container_id}/{owner.ifname}: {exc}")
                continue
            allocator.release(store, owner)
    log.info("GC released %d of %d stale attachment(s)", len(stale) - len(failures), len(stale))
    if failures:
        raise CniError(INTERNAL, "GC could not remove every stale interface", "; ".join(failures))


def status(conf: NetConf) -> None:
    """Ready for ADD: the node's pod CIDR is known, the data directory is
    usable and every pool has a free address."""
    try:
        pools, _ = network(conf)
    except CniError as err:
        raise CniError(NOT_AVAILABLE, "not ready for ADD", str(err)) from None
    store = store_for(conf)
    try:
        used = [allocator.in_use(store, pool) for pool in pools]
    except OSError as exc:
        raise CniError(NOT_AVAILABLE, "not ready for ADD", f"data directory {store.root}: {exc}") from None
    for pool, count in zip(pools, used, strict=True):
        if count >= pool.size:
            raise CniError(NOT_AVAILABLE, "not ready for ADD", f"all {pool.size} addresses in {pool.subnet} are taken")
