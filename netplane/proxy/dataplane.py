"""A proxy mode at work on this node: the decisions every mode shares.

Theory of operation. One FamilySyncer per IP family drives the mode's
compile and applier, and owns the rules no mode should write twice:
1. A sync is full at start, when asked (the periodic full sync, a retry
   after a failure), when the node's context changed (its addresses moved:
   every node-port rule changes), and when the applier reports drift (the
   kernel no longer holds the last plan: a flushed table, a deleted map, a
   detached program). Otherwise it is partial: only the changed ports.
2. The last plan is forgotten before the apply and remembered only once
   the apply succeeded, so after a failure the next sync is full and reads
   back what the kernel holds.
3. After the rules are in, stale UDP conntrack entries are deleted (a hook
   a mode may decline, as the eBPF mode with its own table does).
The Dataplane runs the families in turn, says for each whether its sync
was full and how long it took (`spent`, for the proxier's metrics and
logs), and, once given the metrics (`report_to`), publishes what only it
sees: apply failures, the mode's counts of what the kernel holds, and the
conntrack cleanup. Once the first full sync of every family is in, it removes
what other modes left behind (as kube-proxy does on a mode switch), except
the modes this one relies on. Until then the old rules keep serving.
"""
import dataclasses
import logging
import time

import netaddr

from netplane.proxy import conntrack, modes
from netplane.proxy.model import PortName
from netplane.proxy.policy import PortPolicy
from netplane.proxy.settings import Settings, nodeport_addresses

log = logging.getLogger("netplane.proxy")
Policies = dict[PortName, PortPolicy]


class FamilySyncer:
    def __init__(self, mode: modes.Mode, family: int, settings: Settings, options, applier, local_addresses) -> None:
        self.mode, self.family, self.settings, self.options = mode, family, settings, options
        self.applier, self.local_addresses = applier, local_addresses
        self.plan = None
        self.metrics = None                     # a ProxyMetrics, once the dataplane reports to one

    def context(self):
        """The node's addresses are read only when --nodeport-addresses needs them."""
        local = self.local_addresses() if self.settings.wants_local_addresses(self.family) else None
        return self.mode.context(self.settings, self.options, self.family,
                                 nodeport_addresses(self.settings, self.family, local))

    def sync(self, policies: Policies, changed: set[PortName] | None) -> bool:
        """Make the kernel hold `policies`; returns whether the sync was full."""
        previous, ctx = self.plan, self.context()
        full = previous is None or changed is None or ctx != previous.context
        if not full and (why := self.applier.drift()):
            log.warning("drift: doing a full sync", extra={"family": self.family, "reason": why})
            full = True
        self.plan = None                                   # unknown until the apply succeeds
        installed = self.applier.read_back() if full else None
        plan = self.mode.compile(policies, ctx, None if full else previous, None if full else changed, installed)
        try:
            self.applier.apply(plan, None if full else previous)
        except Exception:
            if self.metrics is not None:                   # kube-proxy's restore failures, per mode
                self.metrics.apply_failed(self.family, full)
            raise
        self.plan = plan
        return full

    def publish_counts(self, full: bool) -> None:
        """The mode's counts of the plan just applied. A count that fails is
        logged, never raised: the rules are in, a retry would not help."""
        if self.metrics is None or self.plan is None:
            return
        try:
            self.metrics.counted(self.family, self.mode.counts(self.plan, full))
        except Exception as err:
            log.error("counting the plan for the metrics failed", extra={"family": self.family, "error": str(err)})

    def dry_run(self, policies: Policies):
        return self.mode.compile(policies, self.context(), None, None, None)


class Dataplane:
    def __init__(self, mode: modes.Mode, settings: Settings, options=None, *, applier=None,
                 local_addresses=None, clean_conntrack=conntrack.clean, sweep: bool = True,
                 all_options: dict | None = None, prepare: bool = True) -> None:
        self.mode, self.settings = mode, settings
        self.options = options if options is not None else mode.options()
        # every mode's configured options: a sweep finds another mode's objects where it was told
        # they are (the eBPF mode's pin path, say), not only at its defaults
        self.all_options = all_options or {}
        make = applier or mode.applier
        self.local_addresses = local_addresses or _local_addresses
        self.syncers = {f: FamilySyncer(mode, f, settings, self.options, make(f, self.options), self.local_addresses)
                        for f in settings.families}
        for s in self.syncers.values() if prepare else ():   # a mode's slow set-up may start now (the eBPF
            getattr(s.applier, "prepare", lambda: None)()        # compile); not for a dry run, which applies nothing
        self.clean_conntrack = clean_conntrack if mode.cleans_conntrack else None
        self.last_full = False                             # whether the last sync was full (metrics, logs, tests)
        self.spent: dict[int, tuple[bool, float]] = {}     # family -> (full, seconds) of the last sync
        self.metrics = None
        self._sweep_pending = sweep

    def move_to_zone(self, zone: str) -> None:
        """The Node's topology label changed: the policies decided from now
        on narrow hints to the new zone (the caller makes the next sync full)."""
        node = dataclasses.replace(self.settings.node, zone=zone)
        self.settings = dataclasses.replace(self.settings, node=node)
        for syncer in self.syncers.values():
            syncer.settings = self.settings

    def report_to(self, metrics) -> None:
        """Publish apply failures, counts and conntrack cleanups to `metrics` (a ProxyMetrics)."""
        self.metrics = metrics
        metrics.use_mode(self.mode.name)
        for syncer in self.syncers.values():
            syncer.metrics = metrics

    @property
    def appliers(self) -> dict:
        return {f: s.applier for f, s in self.syncers.items()}

    def sync(self, policies: dict[int, Policies], changed: set[PortName] | None) -> None:
        self.last_full, self.spent = False, {}
        for family, syncer in self.syncers.items():
            started = time.monotonic()
            mine = policies.get(family, {})
            full = syncer.sync(mine, changed)
            self.last_full |= full
            self._clean_conntrack(family, mine, changed, full)
            self.spent[family] = (full, time.monotonic() - started)
            syncer.publish_counts(full)
        if self._sweep_pending:
            self._sweep_pending = False
            self.sweep_other_modes()

    def _clean_conntrack(self, family: int, policies: Policies, changed, full: bool) -> None:
        if self.clean_conntrack is None or not (full or _udp_changed(policies, changed)):
            return
        started = time.monotonic()
        try:
            deleted = self.clean_conntrack(family, policies)
        except Exception as err:      # the rules are in: a failed cleanup must not undo the sync
            log.error("deleting stale UDP conntrack entries failed", extra={"family": family, "error": str(err)})
            return
        if self.metrics is not None:  # kube-proxy's conntrack reconciler metrics
            self.metrics.conntrack_cleaned(family, time.monotonic() - started, deleted or 0)

    def sweep_other_modes(self, kept_too: bool = False) -> list[str]:
        """Remove what other modes left in the kernel (after a mode switch;
        with `kept_too`, also the modes this one relies on: --cleanup)."""
        removed = []
        for name in modes.names():
            if name == self.mode.name or (name in self.mode.keeps and not kept_too):
                continue
            other = modes.get(name)
            for family in self.settings.families:
                try:
                    applier = other.applier(family, self.all_options.get(name) or other.options())
                    if applier.present():
                        gone = applier.cleanup()
                        log.info("removed what another mode left behind",
                                 extra={"family": family, "mode": name, "objects": len(gone)})
                        removed += gone
                except Exception as err:      # never fatal: the new mode's rules are in
                    log.error("removing another mode's leftovers failed",
                              extra={"family": family, "mode": name, "error": str(err)})
        return removed

    def dry_run(self, policies: dict[int, Policies]) -> str:
        return "".join(self.mode.render(s.dry_run(policies.get(f, {}))) for f, s in self.syncers.items())

    def cleanup(self) -> list[str]:
        removed = []
        for syncer in self.syncers.values():
            removed += syncer.applier.cleanup()
            syncer.plan = None
        return removed


def dataplane(mode_name: str, settings: Settings, options=None, **kwargs) -> Dataplane:
    return Dataplane(modes.get(mode_name), settings, options, **kwargs)


def _udp_changed(policies: Policies, changed) -> bool:
    """Stale UDP flows can only appear when a UDP port's endpoints changed."""
    return changed is None or any(policies[n].port.protocol == "UDP" for n in changed if n in policies)


def _local_addresses() -> list[netaddr.IPAddress]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [netaddr.IPAddress(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()]
