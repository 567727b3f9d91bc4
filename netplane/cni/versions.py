"""The CNI spec versions netplane speaks, and which verbs each allows."""

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED[-1]


def parse(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"malformed version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


# The first spec version that defines each verb; older configs may not use it.
VERB_INTRODUCED = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def allows(version: str, verb: str) -> bool:
    first = VERB_INTRODUCED.get(verb)
    return first is None or at_least(version, first)
