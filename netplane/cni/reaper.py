"""Deferred deletion of retired veth pairs, in batches, off the DEL path.

Removing a network device from a namespace, by deletion or by a move,
waits out RCU grace periods: about 17 ms here, most of a DEL. The agent
therefore splits DEL in two:
- at once, on the caller's thread: take the node end of the veth down
  (its bridge port stops forwarding and the pod end loses carrier, so the
  pod is cut off from the node and every other pod that instant) and
  release the addresses, which can be reused safely because nothing
  reaches the old interface any more;
- here, in the background: delete every retired link with one
  RTM_DELLINK for their netdev group, so a burst of DELs shares one wait.
The standalone plugin has no background thread; a child process it
forks after answering deletes its retired link (ChildReaper).

A retired link that outlives the agent (a crash) is deleted when the
runtime removes the pod's namespace, and the next agent start reaps any
that remain. ADD for the same attachment deletes a lingering retired link
by name before it creates the new pair.
"""
import logging
import os
import threading
import time

from netplane.netlink import messages as m
from netplane.netlink.channel import Channel, NetlinkError

log = logging.getLogger("netplane.cni.reaper")


def retire(node: Channel, host_ifname: str) -> bool:
    """Cut the link off now; False if it had to be deleted at once instead."""
    try:
        node.send(m.retire_link(host_ifname))
        return True
    except NetlinkError as err:
        # Setting a link down does not fail in practice; if it ever
        # does, pay for the synchronous delete rather than leave it up.
        log.warning("cannot retire %s (%s); deleting it now", host_ifname, err)
        node.send(m.del_link(host_ifname))
        return False


class Reaper:
    def __init__(self, linger: float = 0.005) -> None:
        self.linger = linger  # wait this long for more DELs to join a batch
        self._cond = threading.Condition()
        self._queued = 0      # retirements so far
        self._reaped = 0      # retirements covered by a finished batch delete
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="cni-reaper", daemon=True)

    def start(self) -> "Reaper":
        self.reap()  # leftovers from a previous run
        self._thread.start()
        return self

    def retire(self, node: Channel, host_ifname: str) -> None:
        """Cut the link off now and queue it for deletion."""
        if not retire(node, host_ifname):
            return
        with self._cond:
            self._queued += 1
            self._cond.notify_all()

    def reap(self) -> None:
        with Channel.open() as node:
            node.send(m.del_group(m.REAP_GROUP))

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self.reap()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queued > self._reaped or self._stopping)
                if self._stopping:
                    return
            time.sleep(self.linger)
            with self._cond:
                batch = self._queued  # every retirement counted here is already on the link
            try:
                self.reap()
            except Exception:  # keep the thread alive: the next batch retries
                log.exception("deferred deletion failed; retrying")
                time.sleep(0.5)
                continue
            with self._cond:
                self._reaped = batch
                self._cond.notify_all()


class ChildReaper:
    """The standalone plugin's reaper: no agent runs to delete retired links
    in the background, so a child process does, once the plugin has
    answered (finish()). DEL then costs the runtime what it costs through
    the agent: the pod is cut off and its interface name freed before DEL
    returns, and the RCU waits come after. Should the child die first, the
    link stays retired (down, tagged) until the next agent start reaps it,
    or the kernel deletes it with the pod's namespace."""

    def __init__(self) -> None:
        self.retired: list[str] = []

    def retire(self, node: Channel, host_ifname: str) -> None:
        if retire(node, host_ifname):
            self.retired.append(host_ifname)

    def finish(self) -> None:
        """Fork the deleting child; the caller exits right after."""
        if not self.retired or os.fork() > 0:
            return
        try:
            # Detached from the runtime, which reads our stdout to its end
            # and may wait for our session: it must not wait for this.
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            with Channel.open() as node:
                node.send(*(m.del_link(name) for name in self.retired))
        finally:
            os._exit(0)
