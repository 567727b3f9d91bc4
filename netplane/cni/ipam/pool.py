"""One subnet as an address pool: gateway first, then the pod addresses.

Addresses are the stdlib's ipaddress objects, not netaddr's, everywhere a
plugin run goes: the standalone plugin imports its modules on every pod,
and netaddr costs ~20 ms to import here, twice the reference plugin's
whole ADD.
"""
import ipaddress
from dataclasses import dataclass
from typing import Iterator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ADDRESS_CLASS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}


@dataclass(frozen=True)
class Pool:
    subnet: IPNetwork

    def __post_init__(self) -> None:
        # Callers outside the plugin hold netaddr networks; one type inside.
        if not isinstance(self.subnet, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            object.__setattr__(self, "subnet", ipaddress.ip_network(str(self.subnet)))

    @property
    def version(self) -> int:
        return self.subnet.version

    @property
    def gateway(self) -> IPAddress:
        return self.subnet.network_address + 1

    @property
    def first(self) -> int:
        return int(self.subnet.network_address) + 2

    @property
    def last(self) -> int:
        # The top address is IPv4's broadcast; IPv6 skips it too, so both
        # families hand out the same shape of range.
        return int(self.subnet.broadcast_address) - 1

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def usable(self, ip: IPAddress) -> bool:
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def candidates(self, after: IPAddress | None) -> Iterator[IPAddress]:
        """Every usable address once, starting just after `after`.

        Handing addresses out round-robin, as host-local does, keeps a freed
        address unused for as long as possible, so stale ARP entries and
        conntrack state for the old pod have time to expire.
        """
        start = int(after) + 1 if after is not None and self.usable(after) else self.first
        if start > self.last:
            start = self.first
        make = ADDRESS_CLASS[self.version]
        for value in range(start, self.last + 1):
            yield make(value)
        for value in range(self.first, start):
            yield make(value)
