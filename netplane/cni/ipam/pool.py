"""One subnet as an address pool: gateway first, then the pod addresses."""
from dataclasses import dataclass
from typing import Iterator

import netaddr


@dataclass(frozen=True)
class Pool:
    subnet: netaddr.IPNetwork

    @property
    def version(self) -> int:
        return self.subnet.version

    @property
    def gateway(self) -> netaddr.IPAddress:
        return netaddr.IPAddress(self.subnet.first + 1, self.version)

    @property
    def first(self) -> int:
        return self.subnet.first + 2

    @property
    def last(self) -> int:
        # The top address is IPv4's broadcast; IPv6 skips it too, so both
        # families hand out the same shape of range.
        return self.subnet.last - 1

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def usable(self, ip: netaddr.IPAddress) -> bool:
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def candidates(self, after: netaddr.IPAddress | None) -> Iterator[netaddr.IPAddress]:
        """Every usable address once, starting just after `after`.

        Handing addresses out round-robin, as host-local does, keeps a freed
        address unused for as long as possible, so stale ARP entries and
        conntrack state for the old pod have time to expire.
        """
        start = int(after) + 1 if after is not None and self.usable(after) else self.first
        if start > self.last:
            start = self.first
        for value in range(start, self.last + 1):
            yield netaddr.IPAddress(value, self.version)
        for value in range(self.first, start):
            yield netaddr.IPAddress(value, self.version)
