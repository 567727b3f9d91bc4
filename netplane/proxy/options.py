"""A mode's own options: a dataclass whose fields say their config key,
their flag and their allowed values, so that the config file's section and
the command line are read the same way for every mode.

    @dataclass(frozen=True)
    class IptablesOptions:
        layout: str = option("compact", key="layout", flag="--iptables-layout",
                             choices=("compact", "kube-proxy"), help="...")

`iptables.layout: kube-proxy` in the config file and `--iptables-layout
kube-proxy` on the command line then set the same field; a value outside
`choices` is one clear error, whichever way it came.

A boolean option's flag takes kube-proxy's spellings as well as ours:
`--iptables-localhost-nodeports=false` (Go's ParseBool: 1, t, true, 0, f,
false, in any case), `--iptables-localhost-nodeports` and
`--no-iptables-localhost-nodeports`.
"""
import argparse
import dataclasses
from dataclasses import field


class OptionError(ValueError):
    pass


def option(default, *, key: str, flag: str | None = None, choices: tuple = (), help: str = ""):
    return field(default=default, metadata={"key": key, "flag": flag, "choices": choices, "help": help})


def keys(options_cls) -> set[str]:
    return {f.metadata["key"] for f in dataclasses.fields(options_cls)}


def from_section(options_cls, section: dict, where: str):
    """The options set in a config section (fields not named keep their defaults)."""
    values = {}
    for f in dataclasses.fields(options_cls):
        key = f.metadata["key"]
        if section.get(key) not in (None, ""):
            values[f.name] = _checked(f, section[key], f"{where}.{key}")
    return options_cls(**values)


def add_flags(parser, options_cls) -> None:
    for f in dataclasses.fields(options_cls):
        if not f.metadata.get("flag"):
            continue
        if type(f.default) is bool:
            _add_bool_flag(parser, f)
            continue
        choices = f.metadata["choices"]
        parser.add_argument(f.metadata["flag"], dest=_dest(f), default=None, help=f.metadata["help"]
                            + (f" ({' or '.join(choices)}; default {f.default})" if choices else ""))


def _add_bool_flag(parser, f) -> None:
    """--flag, --flag=BOOL (kube-proxy's form) and --no-flag, into one dest."""
    flag = f.metadata["flag"]
    parser.add_argument(flag, dest=_dest(f), nargs="?", const=True, default=None, type=go_bool, metavar="BOOL",
                        help=f"{f.metadata['help']} (or {flag}=true|false, as kube-proxy takes it; "
                                                          f"default {str(f.default).lower()})")
    parser.add_argument("--no-" + flag.lstrip("-"), dest=_dest(f), action="store_false", default=None,
                        help=argparse.SUPPRESS)


GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def go_bool(text: str) -> bool:
    """A flag's value as Go's strconv.ParseBool reads it (kube-proxy's flags)."""
    value = GO_BOOLS.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")
    return value


def with_flags(options, args):
    """`options` with the flags given on the command line (they win over the file)."""
    given = {}
    for f in dataclasses.fields(options):
        value = getattr(args, _dest(f), None) if f.metadata.get("flag") else None
        if value is not None:
            given[f.name] = _checked(f, value, f.metadata["flag"])
    return dataclasses.replace(options, **given)


def _dest(f) -> str:
    return "mode_option_" + f.metadata["flag"].lstrip("-").replace("-", "_")


def of_type(value, kind: type) -> bool:
    """isinstance, except that a bool is no int (YAML's `true` must not pass for 1)."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _checked(f, value, where: str):
    kind = type(f.default)
    if not of_type(value, kind):
        raise OptionError(f"{where}: expected {kind.__name__}, got {value!r}")
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise OptionError(f"{where} {value!r}: choose {' or '.join(f.metadata['choices'])}")
    return value
