"""What the proxy does to a packet, as a value: the verdict of the mode's
tracer, with the Service it hit, in a form words.py prints and --json dumps.

Exit codes (for scripts): 0 the packet reaches an endpoint; 1 it is
rejected or dropped; 3 no Service port matches it and it passes untouched;
2 is the CLI's bad input."""
import re
from dataclasses import dataclass

import netaddr

from netplane.explain.names import Frontend
from netplane.explain.packet import Packet
from netplane.testing.verdict import Verdict, weights

EXIT = {"endpoint": 0, "reject": 1, "drop": 1, "untouched": 3}


@dataclass(frozen=True)
class Explanation:
    packet: Packet
    mode: str
    source: str                         # "live" or "manifests PATH"
    verdict: Verdict
    frontend: Frontend | None
    cluster_cidr: netaddr.IPNetwork | None = None
    names_known: bool = False           # the Services were read (--manifests): no frontend means no Service
    on_address: tuple[str, ...] = ()    # the Service ports served on the destination address ("ns/name:port 80/tcp")

    @property
    def outcome(self) -> str:
        if self.verdict.verdict in ("REJECT", "DROP"):
            return self.verdict.verdict.lower()
        return "endpoint" if self.verdict.endpoints else "untouched"

    @property
    def exit_code(self) -> int:
        return EXIT[self.outcome]

    def weights(self) -> dict[str, float]:
        return dict(sorted(weights(self.verdict).items()))

    def decided_by(self) -> list[str]:
        """The steps every way shares: the rules (chains, map entries) up to the choice."""
        trails = [b.steps for b in self.verdict.branches]
        if not trails:
            return []
        common = []
        for steps in zip(*trails):
            if len(set(steps)) != 1:
                break
            common.append(steps[0])
        return common

    def after_choice(self, endpoint: str, all_steps: bool = False) -> list[str]:
        """The steps of the way to `endpoint` past the shared ones, up to the
        one that names the endpoint (the DNAT, the map element, the real
        server), or every one of them with `all_steps`."""
        shared = len(self.decided_by())
        way = next((b for b in self.verdict.branches if b.endpoint == endpoint), None)
        if way is None:
            return []
        steps = list(way.steps[shared:])
        if all_steps:
            return steps
        host, port = endpoint.rsplit(":", 1)
        host = host.strip("[]")
        naming = next((i for i, step in enumerate(steps)
                       if host in step and re.search(rf"(?<![\d.]){port}(?!\d)", step.split(host, 1)[1])), None)
        return steps if naming is None else steps[:naming + 1]

    def masquerade_reasons(self) -> list[str]:
        """The steps that mark or masquerade it, on any way."""
        seen = []
        for branch in self.verdict.branches:
            for step in branch.steps:
                if "masq" in step.lower() and step not in seen:
                    seen.append(step)
        return seen

    def source_in_cluster(self) -> bool | None:
        if self.cluster_cidr is None:
            return None
        return netaddr.IPAddress(self.packet.src) in self.cluster_cidr

    def to_json(self) -> dict:
        v = self.verdict
        weights = self.weights()
        return {
            "packet": {"source": self.packet.src, "destination": self.packet.dst, "port": self.packet.port,
                       "protocol": self.packet.proto},
            "mode": self.mode, "from": self.source, "outcome": self.outcome, "exit_code": self.exit_code,
            "service": self.frontend.service if self.frontend else None,
            "on_address": list(self.on_address),
            "frontend": (self.frontend.kind or None) if self.frontend else None,
            "endpoints": [{"endpoint": ep, "weight": round(w, 6), "masquerade": ep in v.masqueraded_to,
                           "steps": self.after_choice(ep, all_steps=True)} for ep, w in weights.items()],
            "masquerade": v.masquerade, "masquerade_steps": self.masquerade_reasons(),
            "decided_by": self.decided_by(),
        }
