"""The live kernel's state, read into the form the fake kernels hold
(kernel.Kernel), in the current network namespace: the node's, or the one
`--netns` entered.

- iptables: iptables-save's nat and filter tables (the backend that holds
  our NP- chains: the system's default, else legacy or nft), our chains
  whole and the built-in chains' jumps into them. Other software's rules
  are left out: this explains what the proxy does, not the whole firewall.
- nftables: `nft -j list table` for the base chains and the sets and maps
  with their elements; `nft list table` for the rules' text, which the
  tracer parses as it parses the renderer's.
The eBPF and IPVS modes are not read live yet: --manifests explains them.
"""
import json
import re
import shlex
import subprocess

import netaddr
from pyroute2 import IPRoute

from netplane.errors import OperatorError
from netplane.explain.kernel import Kernel
from netplane.proxy import modes
from netplane.proxy.iptables.chains import PREFIX
from netplane.proxy.nftables.names import FAMILY, TABLE

BUILTIN = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"), "filter": ("INPUT", "FORWARD", "OUTPUT")}
READABLE = ("iptables", "nftables")


def local_addresses() -> tuple[str, ...]:
    with IPRoute() as ipr:
        return tuple(str(netaddr.IPAddress(a.get_attr("IFA_ADDRESS"))) for a in ipr.get_addr())


def detect(family: int, options: dict) -> str:
    """The one mode whose state is installed here (each mode's applier says:
    present()). The modes read live are looked for first: the eBPF mode's
    pinned maps are per machine, not per network namespace."""
    for group in (READABLE, [m for m in modes.names() if m not in READABLE]):
        found = [name for name in group if _present(name, family, options)]
        if len(found) == 1:
            return found[0]
        if found:
            raise OperatorError(f"the state of several modes is here ({', '.join(found)}): choose one with --mode")
    raise OperatorError(f"no proxy mode's IPv{family} state in this network namespace: is netplane proxy "
                        "running here? (on the lab, use --netns NODE or ip netns exec NODE)")


def _present(name: str, family: int, options: dict) -> bool:
    mode = modes.get(name)
    try:
        return bool(mode.applier(family, options.get(name) or mode.options()).present())
    except Exception:       # a mode this machine cannot even look for (no nft, no ipvs module) is absent
        return False


def kernel(mode: str, family: int) -> Kernel:
    if mode == "iptables":
        return Kernel(mode, family, iptables_tables(family), local_addresses())
    if mode == "nftables":
        return Kernel(mode, family, nft_table(FAMILY[family], TABLE), local_addresses())
    raise OperatorError(f"netplane explain cannot read the {mode} mode's live state yet: "
                        f"explain what it would do with --manifests DIR --mode {mode}")


# -- iptables ---------------------------------------------------------------------------------


def iptables_tables(family: int) -> dict[str, dict[str, list[str]]]:
    prefix = "iptables" if family == 4 else "ip6tables"
    for save in (f"{prefix}-save", f"{prefix}-legacy-save", f"{prefix}-nft-save"):
        tables = {t: _saved_chains(_run([save, "-t", t], missing_ok=True)) for t in BUILTIN}
        if any(name.startswith(PREFIX) for chains in tables.values() for name in chains):
            return {t: _ours(t, chains) for t, chains in tables.items()}
    raise OperatorError(f"no netplane chains in {prefix}-save's nat or filter table here "
                        "(neither the nft nor the legacy backend holds any)")


def _saved_chains(text: str) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(_mark_as_written(line))
    return chains


def _ours(table: str, chains: dict[str, list[str]]) -> dict[str, list[str]]:
    """Our chains, and the built-in chains' jumps into them."""
    out = {name: rules for name, rules in chains.items() if name.startswith(PREFIX)}
    for builtin in BUILTIN[table]:
        out[builtin] = [r for r in chains.get(builtin, []) if _target(r).startswith(PREFIX)]
    return out


def _target(rule: str) -> str:
    words = shlex.split(rule)
    return words[words.index("-j") + 1] if "-j" in words else ""


def _mark_as_written(rule: str) -> str:
    """iptables-save prints `MARK --or-mark X` as `--set-xmark X/X` and
    `--xor-mark X` as `--set-xmark X/0x0`: back to what the proxy wrote,
    the form the tracer reads."""
    def written(match) -> str:
        value, mask = (int(x, 16) for x in match.group(1, 2))
        if mask == value:
            return f"--or-mark {value:#x}"
        if mask == 0:
            return f"--xor-mark {value:#x}"
        raise OperatorError(f"a MARK rule the tracer cannot read: {rule}")
    return re.sub(r"--set-xmark (0x[0-9a-fA-F]+)/(0x[0-9a-fA-F]+)", written, rule)


# -- nftables ---------------------------------------------------------------------------------


def nft_table(family: str, name: str) -> dict:
    listed = json.loads(_run(["nft", "-j", "list", "table", family, name]))["nftables"]
    table = {"chains": _rule_texts(_run(["nft", "list", "table", family, name])), "base": {}, "sets": {}}
    for item in listed:
        if "chain" in item and "hook" in item["chain"]:
            c = item["chain"]
            table["base"][c["name"]] = (c["type"], c["hook"], str(c["prio"]))
        for kind in ("set", "map"):
            if kind in item:
                s = item[kind]
                table["sets"][s["name"]] = {"body": "", "elements": dict(_element(e, kind == "map")
                                                                        for e in s.get("elem", []))}
    return table


def _rule_texts(text: str) -> dict[str, list[str]]:
    """chain -> its rules, from `nft list table` (a base chain's `type ...` line is no rule)."""
    chains, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("chain ") and line.endswith("{"):
            current = chains.setdefault(line.split()[1], [])
        elif line == "}":
            current = None
        elif current is not None and line and not line.startswith("type "):
            current.append(line)
    return chains


def _element(item, is_map: bool):
    """A JSON element as FakeNft keeps it: (key fields, value: None, a verdict, or value fields)."""
    if is_map:
        key, value = item
        return _fields(key), _value(value)
    return _fields(item), None


def _fields(item) -> tuple[str, ...]:
    if isinstance(item, dict) and "elem" in item:            # with a timeout or a counter
        return _fields(item["elem"]["val"])
    if isinstance(item, dict) and "concat" in item:
        return tuple(_field(x) for x in item["concat"])
    return (_field(item),)


def _field(x) -> str:
    if isinstance(x, dict) and "prefix" in x:
        return f"{x['prefix']['addr']}/{x['prefix']['len']}"
    if isinstance(x, dict):
        raise OperatorError(f"an nftables element the tracer cannot read: {json.dumps(x)}")
    return str(x)


def _value(value):
    if isinstance(value, dict):
        for verdict in ("goto", "jump"):
            if verdict in value:
                return f"{verdict} {value[verdict]['target']}"
        for verdict in ("accept", "drop", "return", "continue"):
            if verdict in value:
                return verdict
    return _fields(value)


def _run(argv: list[str], missing_ok: bool = False) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise OperatorError(f"{argv[0]} is not installed here") from None
    if done.returncode != 0:
        if missing_ok:
            return ""
        raise OperatorError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


