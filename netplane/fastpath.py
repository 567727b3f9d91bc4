"""Choose between a compiled extension and its pure-Python twin.

Every module in ext/ has a pure-Python twin in the package that produces
byte-identical output. The compiled one is used when it was built, unless
NETPLANE_NO_EXTENSIONS=1 asks for the pure path (for debugging, and for the
tests that compare the two).
"""
import importlib
import os
from types import ModuleType

PURE = {
    "naming": "netplane.naming",
    "iptables_rules": "netplane.proxy.iptables.rules",      # port_rules()
    "iptables_text": "netplane.proxy.iptables.text",        # top_level(), transaction()
    "nftables_text": "netplane.proxy.nftables.render",      # elements_text(), keys_text()
    "ebpf_entries": "netplane.proxy.ebpf.entries",          # group_entries()
    "maglev": "netplane.proxy.ebpf.maglev",                 # table()
}


def extensions_disabled() -> bool:
    return os.environ.get("NETPLANE_NO_EXTENSIONS") == "1"


def load(name: str) -> ModuleType:
    """The fastest available implementation of module `name`."""
    if not extensions_disabled():
        try:
            return importlib.import_module(f"netplane._ext.{name}")
        except ImportError:
            pass
    return importlib.import_module(PURE[name])


def is_compiled(module: ModuleType) -> bool:
    return module.__name__.startswith("netplane._ext.")
