"""The live kernel's state, read into the form the fake kernels hold
(kernel.Kernel), in the current network namespace: the node's, or the one
`--netns` entered.

- iptables: iptables-save's nat and filter tables (the backend that holds
  our NP- chains: nft, else legacy; whole dumps, which create nothing), our chains
  whole and the built-in chains' jumps into them. Other software's rules
  are left out: this explains what the proxy does, not the whole firewall.
- nftables: `nft -j list table` for the base chains and the sets and maps
  with their elements; `nft list table` for the rules' text, which the
  tracer parses as it parses the renderer's.
- ebpf: the maps pinned under the mode's pin path (live_ebpf.py), which
  are the machine's bpffs, not the network namespace's: where() says which
  path was read.
- ipvs: the table `netplane-ipvs` as for nftables, the mode's own virtual
  and real servers (live_ipvs.py); np-ipvs0's addresses are among this
  namespace's, so local.
"""
import json
import re
import shlex
import subprocess
from dataclasses import dataclass

import netaddr
from pyroute2 import IPRoute

from netplane.errors import OperatorError
from netplane.explain import live_ebpf, live_ipvs
from netplane.explain.kernel import Kernel
from netplane.explain.privilege import NEEDS_ROOT, denied
from netplane.proxy import modes
from netplane.proxy.iptables.chains import PREFIX
from netplane.proxy.ipvs.names import TABLE as IPVS_TABLE
from netplane.proxy.nftables.names import FAMILY, TABLE

BUILTIN = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"), "filter": ("INPUT", "FORWARD", "OUTPUT")}
# detect() looks for the modes whose state is the network namespace's first:
# the eBPF mode's pins are the machine's, there whichever namespace asks
PER_NAMESPACE = ("iptables", "nftables", "ipvs")
PER_MACHINE = ("ebpf",)


@dataclass
class LiveKernel(Kernel):
    read_from: str = ""             # what was read, when it is not this namespace's (the eBPF pins)


def local_addresses() -> tuple[str, ...]:
    with IPRoute() as ipr:
        return tuple(str(netaddr.IPAddress(a.get_attr("IFA_ADDRESS"))) for a in ipr.get_addr())


def detect(family: int, options: dict) -> str:
    """The one mode whose state is installed here (each mode's applier says:
    present()). The modes whose state is the network namespace's are looked
    for first: the eBPF mode's pinned maps are per machine. A mode that
    could not be looked for for lack of privilege stops the search: that
    is what to say, not that nothing is here."""
    known = PER_NAMESPACE + PER_MACHINE
    for group in (PER_NAMESPACE, PER_MACHINE, [m for m in modes.names() if m not in known]):
        looked = {name: _present(name, family, options) for name in group}
        found = [name for name, present in looked.items() if present]
        if len(found) == 1:
            return found[0]
        if found:
            raise OperatorError(f"the state of several modes is here ({', '.join(found)}): choose one with --mode")
        refused = [name for name, present in looked.items() if present is None]
        if refused:
            raise OperatorError(f"cannot read the {'/'.join(refused)} state here: permission denied; {NEEDS_ROOT}")
    raise OperatorError(f"no proxy mode's IPv{family} state in this network namespace: is netplane proxy "
                        "running here? (on the lab, use --netns NODE or ip netns exec NODE)")


def _present(name: str, family: int, options: dict) -> bool | None:
    """Whether the mode's state is here; None: not allowed to look."""
    mode = modes.get(name)
    try:
        return bool(mode.applier(family, options.get(name) or mode.options()).present())
    except Exception as err:    # a mode this machine cannot even look for (no nft, no ipvs module) is absent
        return None if denied(err) else False


def kernel(mode: str, family: int, options: dict | None = None, cluster_cidrs=()) -> LiveKernel:
    """`options`: mode name -> its options (the config's mode_options; the
    defaults where absent); `cluster_cidrs`: the eBPF mode traces a source
    in them as a pod's socket on this node."""
    if mode == "iptables":
        return LiveKernel(mode, family, iptables_tables(family), local_addresses())
    if mode == "nftables":
        return LiveKernel(mode, family, nft_table(FAMILY[family], TABLE), local_addresses())
    if mode == "ebpf":
        pin = _options("ebpf", options).pin_path
        return LiveKernel(mode, family, live_ebpf.read(pin), local_addresses(), tuple(cluster_cidrs),
                          read_from=f"maps pinned under {pin}")
    if mode == "ipvs":
        servers = live_ipvs.read(family, _options("ipvs", options))
        return LiveKernel(mode, family, (nft_table(FAMILY[family], IPVS_TABLE), servers), local_addresses())
    raise OperatorError(f"netplane explain cannot read the {mode} mode's live state: "
                        f"explain what it would do with --manifests DIR --mode {mode}")


def where(kernel: Kernel, netns: str | None) -> str:
    """What the answer was read from, for the `proxy` line."""
    namespace = f"network namespace {netns}" if netns else "this network namespace"
    read_from = getattr(kernel, "read_from", "")
    if read_from:
        return f"live {read_from} (a bpffs: the machine's, not {namespace}'s)"
    return f"live state of {namespace}"


def _options(mode: str, options: dict | None):
    return (options or {}).get(mode) or modes.get(mode).options()


# -- iptables ---------------------------------------------------------------------------------


def iptables_tables(family: int) -> dict[str, dict[str, list[str]]]:
    prefix = "iptables" if family == 4 else "ip6tables"
    # whole dumps, never `-t TABLE`: naming a table to iptables-legacy-save creates it in the kernel
    for save in (f"{prefix}-nft-save", f"{prefix}-legacy-save"):
        tables = _tables_of(_run([save], missing_ok=True))
        if any(name.startswith(PREFIX) for chains in tables.values() for name in chains):
            return {t: _ours(t, chains) for t, chains in tables.items()}
    raise OperatorError(f"no netplane chains in {prefix}-save's nat or filter table here "
                        "(neither the nft nor the legacy backend holds any)")


def _tables_of(dump: str) -> dict[str, dict[str, list[str]]]:
    """iptables-save's whole output split by table (`*nat` ... `COMMIT`): nat and filter's chains."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in dump.splitlines():
        if line.startswith("*"):
            current = sections.setdefault(line[1:].strip(), [])
        elif current is not None:
            current.append(line)
    return {table: _saved_chains("\n".join(sections.get(table, []))) for table in BUILTIN}


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
                elements = dict(_element(e, kind == "map") for e in s.get("elem", []))
                if s.get("map") == "mark":           # JSON gives marks in decimal; the compile writes hex
                    elements = {k: tuple(f"{int(x):#x}" for x in v) for k, v in elements.items()}
                table["sets"][s["name"]] = {"body": "", "elements": elements}
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
            current.append(_nft_as_written(line))
    return chains


def _nft_as_written(rule: str) -> str:
    """nft lists `meta mark & 0xfff00000 == 0x4e500000` as `meta mark
    0x4e500000/12`, and pads hex values to 8 digits (`0x00004000`): back to
    what the proxy wrote, the form the tracer reads (and the compile says)."""
    def masked(match) -> str:
        bits = int(match.group(3))
        mask = ((1 << bits) - 1) << (32 - bits)
        return f"{match.group(1)} mark & {mask:#x} == {match.group(2)}"
    rule = re.sub(r"\b(meta|ct) mark (0x[0-9a-f]+)/(\d+)\b", masked, rule)
    return re.sub(r"\b0x0+(?=[0-9a-f])", "0x", rule)


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
    """A tool's output. `missing_ok`: "" when it is not installed or fails,
    but never when it was refused for lack of privilege."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise OperatorError(f"{argv[0]} is not installed here") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        if denied(why):
            raise OperatorError(f"{why if why.startswith(argv[0]) else argv[0] + ': ' + why}; {NEEDS_ROOT}")
        if missing_ok:
            return ""
        raise OperatorError(f"{' '.join(argv)} failed: {why}")
    return done.stdout
