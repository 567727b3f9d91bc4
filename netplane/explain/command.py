"""`netplane explain`'s steps: read or compile the state, trace, say."""
import json
import os

from netplane.errors import OperatorError
from netplane.explain import compiled, live, names
from netplane.explain.explanation import Explanation
from netplane.explain.packet import Packet


def explain(packet: Packet, cfg, checked, *, manifests: str | None, mode: str | None,
            netns: str | None) -> Explanation:
    """`mode`: the one asked for (None: the live one, detected)."""
    cidr = next((c for c in checked.cluster_cidrs if c.version == packet.family), None)
    if manifests is not None and netns:
        raise OperatorError("--netns reads a namespace's live state; --manifests explains a compile: give one")
    if manifests is not None:
        if not os.path.exists(manifests):
            raise OperatorError(f"manifests {manifests}: no such file or directory")
        kernel, policies = compiled.kernel(cfg, checked, packet.family)
        frontend = names.from_policies(policies, packet, kernel.local)
        where = f"as compiled from {manifests}"
    else:
        if netns:
            enter(netns)
        kernel = live.kernel(mode or live.detect(packet.family, cfg.mode_options), packet.family,
                             cfg.mode_options, checked.cluster_cidrs)
        frontend, policies = None, None
        where = live.where(kernel, netns)
    verdict = kernel.trace(packet)
    frontend = frontend or names.from_steps(kernel.mode, [s for b in verdict.branches for s in b.steps])
    return Explanation(packet, kernel.mode, where, verdict, frontend, cidr, names_known=manifests is not None,
                       on_address=() if frontend else _served_instead(kernel, policies, packet))


def _served_instead(kernel, policies: dict | None, packet: Packet) -> tuple[str, ...]:
    """No Service port matched: those on its address (from the manifests'
    Services, or the live iptables rules' comments; other live modes hold
    addresses only)."""
    if policies is not None:
        return names.on_address_from_policies(policies, packet, kernel.local)
    return names.on_address_from_rules(kernel.mode, kernel.state, packet)


def enter(name: str) -> None:
    """Move this process (and the tools it runs) into /run/netns/NAME."""
    from pyroute2 import netns

    path = name if "/" in name else f"/run/netns/{name}"
    if not os.path.exists(path):
        raise OperatorError(f"--netns {name}: no such network namespace ({path})")
    try:
        netns.setns(path, flags=0)
    except OSError as err:
        raise OperatorError(f"--netns {name}: cannot enter it: {err.strerror or err} (root is needed)") from None


def dumps(x: Explanation) -> str:
    return json.dumps(x.to_json(), indent=2) + "\n"
