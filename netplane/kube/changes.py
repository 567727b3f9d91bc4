"""Per-object changes, as every source of Kubernetes objects delivers them.

A Change says that the object `key` of `kind` went from `old` to `new`
(None for "absent": an add has no old, a delete no new). The objects are
the raw dicts the source read, shared with it, so consumers read them only.
Delivering changes instead of whole collections is what lets the proxy
parse only what changed (kube-proxy's change trackers work the same way).
"""
from typing import NamedTuple


class Change(NamedTuple):
    kind: str
    key: str
    old: dict | None
    new: dict | None


def object_key(obj: dict, namespaced: bool = True) -> str:
    """namespace/name (the namespace defaulted, as the API server does), or
    the name alone. Objects without a usable name still get a key, so that
    the consumer sees them and reports them as invalid."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    name = name if isinstance(name, str) else repr(name)
    if not namespaced:
        return name
    namespace = meta.get("namespace")
    return f"{namespace if isinstance(namespace, str) and namespace else 'default'}/{name}"


def diff(kind: str, old: dict[str, dict], new: dict[str, dict]) -> list[Change]:
    """The changes that turn collection `old` into `new` (key -> object)."""
    changes = [Change(kind, key, obj, None) for key, obj in old.items() if key not in new]
    for key, obj in new.items():
        before = old.get(key)
        if before is None or (before is not obj and before != obj):
            changes.append(Change(kind, key, before, obj))
    return changes
