"""Which iptables backend the node uses: nft (the nf_tables kernel API) or
legacy (the x_tables one). Both can hold rules at once, and a packet goes
through both, but each tool only sees its own: rules written with the
wrong one are invisible to the admin's `iptables-save` and to kubelet's,
so the proxy must write where the node already writes.

Detection follows kube-proxy's image wrapper (kubernetes-sigs/
iptables-wrappers): kubelet (1.17+) leaves a KUBE-IPTABLES-HINT or
KUBE-KUBELET-CANARY chain in the backend it uses, which settles it, nft
looked at first; without that hint, the backend holding more rules wins
(the wrapper's older test), and nft on a tie, an empty node included. Our
own NP- rules count too, so a restarted proxy stays where it was.

It runs once per process, in the namespace the proxy runs in (the node's),
and the choice is logged once with its reason.
"""
import logging
import re
import subprocess
import threading
from dataclasses import dataclass

log = logging.getLogger("netplane.proxy")

AUTO, NFT, LEGACY = "auto", "nft", "legacy"
BACKENDS = (AUTO, NFT, LEGACY)
KUBELET_HINT = re.compile(r"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) ", re.M)
SAVE_TIMEOUT = 10.0        # the wrapper bounds the nft listing too: some iptables-nft versions could loop


@dataclass(frozen=True)
class Choice:
    backend: str           # nft or legacy
    reason: str            # why, in words for the log


def binaries(family: int, backend: str | None) -> tuple[str, str, str]:
    """(iptables, iptables-restore, iptables-save) for a family and backend;
    None: the system's default alternative (plain `iptables`)."""
    prefix = "iptables" if family == 4 else "ip6tables"
    if backend in (NFT, LEGACY):
        prefix = f"{prefix}-{backend}"
    return prefix, f"{prefix}-restore", f"{prefix}-save"


def save(backend: str, *args: str) -> str:
    """Both families' iptables-save output from one backend ("" for what
    fails or is not installed: detection is best effort, as the wrapper's)."""
    out = []
    for family in (4, 6):
        try:
            done = subprocess.run([binaries(family, backend)[2], *args], capture_output=True, text=True,
                                  timeout=SAVE_TIMEOUT)
            out.append(done.stdout)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "".join(out)


def rule_count(saved: str) -> int:
    return sum(1 for line in saved.splitlines() if line.startswith("-A "))


def detect(save=save) -> Choice:
    """The backend the node uses, from what each one holds."""
    # -t mangle keeps nft's listing short; legacy is listed whole, because
    # naming a table to iptables-legacy-save would create it in the kernel
    if hint := KUBELET_HINT.search(save(NFT, "-t", "mangle")):
        return Choice(NFT, f"kubelet's {hint.group(1)} chain is in it")
    legacy = save(LEGACY)
    if hint := KUBELET_HINT.search(legacy):
        return Choice(LEGACY, f"kubelet's {hint.group(1)} chain is in it")
    in_legacy, in_nft = rule_count(legacy), rule_count(save(NFT))
    if in_legacy > in_nft:
        return Choice(LEGACY, f"it holds {in_legacy} rules, nft {in_nft}")
    if in_nft:
        return Choice(NFT, f"it holds {in_nft} rules, legacy {in_legacy}")
    return Choice(NFT, "neither backend holds a rule yet: the default")


_chosen: Choice | None = None
_lock = threading.Lock()


def resolve(requested: str, detector=None) -> str:
    """The backend to use for `requested` (auto, nft or legacy): decided and
    logged on the first call, the same for every later one (both families,
    every applier of this process)."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = (detector or detect)() if requested == AUTO else \
                Choice(requested, "set by --iptables-backend / iptables.backend")
            log.info("iptables backend", extra={"backend": _chosen.backend, "reason": _chosen.reason})
        elif requested not in (AUTO, _chosen.backend):
            log.warning("iptables backend asked for after another was chosen; keeping the first",
                        extra={"asked": requested, "backend": _chosen.backend})
        return _chosen.backend


def chosen_backend() -> Choice | None:
    """The backend this process chose, and why (None: the iptables mode has
    not run). For the startup summary."""
    return _chosen


def forget() -> None:
    """Forget the choice (tests)."""
    global _chosen
    with _lock:
        _chosen = None
