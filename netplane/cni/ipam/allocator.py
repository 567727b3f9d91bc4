"""Allocate and release an attachment's addresses; all decisions, no I/O.

Everything runs under the store's lock, which serialises concurrent plugin
runs and agent threads alike. The attachment record is written before the
address files: a crash between the two leaves a record naming addresses
that were never taken (harmless, and DEL clears it) rather than taken
addresses that no record points to.

A requested address (runtimeConfig.ips) replaces the search in its family.
It is checked against the pool before the lock is taken, and found taken
before anything is written, so a refused request leaves nothing behind.
"""
from typing import Sequence

import ipaddress

from netplane.cni import capabilities
from netplane.cni.capabilities import RequestedIP
from netplane.cni.config import Attachment
from netplane.cni.errors import ADDRESS_TAKEN, ATTACHMENT_EXISTS, INTERNAL, RANGE_EXHAUSTED, CniError
from netplane.cni.ipam.pool import IPAddress, Pool
from netplane.cni.ipam.store import Store


def allocate(store: Store, owner: Attachment, pools: list[Pool],
             requested: Sequence[RequestedIP] = ()) -> list[str]:
    """One address from each pool for `owner`, in pool order: the requested
    one where the family has one, else the next free one."""
    wanted = capabilities.fit(requested, pools)
    with store.locked():
        if store.has_record(owner):
            raise CniError(ATTACHMENT_EXISTS, "attachment already exists",
                           f"container {owner.container_id} already has interface {owner.ifname} on this "
                           f"network ({', '.join(store.lookup(owner))}); DEL it first")
        for ip in wanted.values():
            _expect_free(store, ip)
        chosen = [wanted.get(pool.version) or _pick(store, pool) for pool in pools]
        store.record(owner, chosen)
        try:
            for ip in chosen:
                if not store.try_reserve(ip, owner):
                    raise CniError(INTERNAL, "address store changed under its lock", ip)
        except BaseException:
            _release_locked(store, owner)
            raise
        for pool, ip in zip(pools, chosen, strict=True):
            if pool.version in wanted:
                continue  # the cursor follows the search; a request is not part of it
            try:
                store.set_last_reserved(pool.version, ip)
            except OSError:
                pass  # only a hint for where the next search starts
        return chosen


def _expect_free(store: Store, ip: str) -> None:
    if store.is_free(ip):
        return
    holder = next((o for o, ips in store.owners().items() if ip in ips), None)
    who = f"container {holder.container_id} interface {holder.ifname}" if holder else "another attachment"
    raise CniError(ADDRESS_TAKEN, "address requested in 'runtimeConfig.ips' is taken",
                   f"{ip} is held by {who}; DEL that first or request another address")


def _pick(store: Store, pool: Pool) -> str:
    for candidate in pool.candidates(_parse_ip(store.last_reserved(pool.version))):
        ip = str(candidate)
        if store.is_free(ip):
            return ip
    raise CniError(RANGE_EXHAUSTED, "no free address left",
                   f"all {pool.size} pod addresses in {pool.subnet} are taken")


def release(store: Store, owner: Attachment) -> list[str]:
    """Free everything `owner` holds; returns the addresses. Idempotent."""
    with store.locked():
        return _release_locked(store, owner)


def _release_locked(store: Store, owner: Attachment) -> list[str]:
    ips = store.lookup(owner)
    for ip in ips:
        store.unreserve(ip, owner)
    store.forget(owner)
    return ips


def addresses_of(store: Store, owner: Attachment) -> list[str]:
    with store.locked():
        return store.lookup(owner) if store.has_record(owner) else []


def stale_attachments(store: Store, valid: frozenset[Attachment]) -> list[Attachment]:
    """Every attachment holding addresses that is not in `valid`; also
    removes the debris of interrupted writers, which no owner can release."""
    with store.locked():
        store.discard_debris()
        return [owner for owner in store.owners() if owner not in valid]


def in_use(store: Store, pool: Pool) -> int:
    """How many of the pool's addresses are reserved."""
    with store.locked():
        return sum(1 for ips in store.owners().values() for ip in ips if _in_pool(pool, ip))


def _in_pool(pool: Pool, text: str) -> bool:
    ip = _parse_ip(text)
    return ip is not None and pool.usable(ip)


def _parse_ip(text: str | None) -> IPAddress | None:
    """An address read back from disk; anything unparsable counts as absent."""
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None
