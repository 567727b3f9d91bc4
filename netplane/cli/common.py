"""What every subcommand shares: one-line usage errors, the parser class,
logging from the flags, and kube-proxy's ways of writing values."""
import argparse

from netplane.errors import OperatorError
from netplane.logs import configure_logging


class UsageError(OperatorError):
    pass


class Exit:
    """Set by a one-shot command that built millions of objects (a compile
    at scale): the process then leaves without freeing them one by one,
    which takes longer than the compile (0.4 s at 10k Services)."""
    fast = False


def configure_logging_from(args, verbosity: int | None = None, log_format: str = "text") -> None:
    """--log-level, else kube-proxy's verbosity (klog: 4 and up is debug
    output) from --v or the config file; in text (key=value) or JSON lines."""
    verbosity = getattr(args, "verbosity", None) if verbosity is None else verbosity
    level = args.log_level or ("DEBUG" if (verbosity or 0) >= 4 else "INFO")
    try:
        configure_logging(level, path=args.log_file, format=log_format)
    except OSError as exc:
        raise UsageError(f"--log-file {args.log_file}: {exc.strerror}") from None


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag said in one line (the usage block is what
    --help is for); subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def boolean(text: str) -> bool:
    """A flag's value as Go's strconv.ParseBool reads it."""
    from netplane.proxy.options import go_bool

    return go_bool(text)


def commas(values) -> list[str] | None:
    """A repeated or comma-separated flag's values, as one list (None: not given)."""
    if values is None:
        return None
    items = values if isinstance(values, list) else [values]
    return [part.strip() for item in items for part in item.split(",") if part.strip()]
