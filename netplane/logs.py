"""Structured logs: one line per event, on stderr or a file, as key=value
text (the default) or JSON (`--logging-format json`).

Fields are first-class: whatever a caller passes with logging's standard
`extra=` keyword is written after the message, each as its own key:

    log.info("sync done", extra={"sync": "partial", "duration_ms": 3.2,
                                 "services": ["default/web:http"]})

text:  ts=2026-12-01T04:56:08.123Z level=info logger=netplane.proxy msg="sync done"
       sync=partial duration_ms=3.2 services=default/web:http
json:  {"ts":"2026-12-01T04:56:08.123Z","level":"info","v":0,"logger":"netplane.proxy",
        "msg":"sync done","sync":"partial","duration_ms":3.2,"services":["default/web:http"]}

The JSON shape follows klog's JSON format (k8s.io/component-base/logs/json,
kube-proxy's --logging-format=json) where it can: `msg`, `v` (klog's
verbosity: 0 for info and above, 4 for debug, as `--v=4` is our debug)
and the fields as members at the top level. It differs where Python's
logging has more to say or a person reads the line: `ts` is RFC 3339 in
UTC with milliseconds rather than float seconds since the epoch, `level`
is written out (klog only marks errors, by the presence of `err`),
`logger` names the component, and an exception's text is `error`, the
same key in both formats.

A field named like one of the line's own keys (ts, level, v, logger, msg,
error when there is an exception) is written as that name with a trailing
underscore, so it can never hide them. Values: in text, lists, tuples and
sets are comma-joined, booleans are true/false, None is null, and a value
is quoted (with \\ " and newlines escaped) when it is empty or has spaces,
quotes, '=' or control characters; in JSON, a value JSON cannot hold is
written as its str(), and a set as a sorted list.
"""
import json
import logging
import sys
import time

FORMATS = ("text", "json")
# every attribute logging itself puts on a record (taskName and the like
# differ between Python versions, so ask a fresh record rather than list them)
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}
_DEBUG_VERBOSITY = 4
_COMPACT = (",", ":")                # as klog writes it: one short line per event


def fields_of(record: logging.LogRecord) -> dict:
    """The fields a caller passed with `extra=`, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _verbosity(record: logging.LogRecord) -> int:
    return _DEBUG_VERBOSITY if record.levelno < logging.INFO else 0


class _Structured(logging.Formatter):
    """The record's own keys, then its fields, then the exception."""

    def entries(self, record: logging.LogRecord) -> tuple[dict, dict]:
        own = {"ts": _timestamp(record), "level": record.levelname.lower(), "v": _verbosity(record),
               "logger": record.name, "msg": record.getMessage()}
        error = self._error(record)
        if error is not None:
            own["error"] = error
        fields = {(f"{k}_" if k in own else k): v for k, v in fields_of(record).items()}
        return own, fields

    def _error(self, record: logging.LogRecord) -> str | None:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts) if parts else None


class KeyValueFormatter(_Structured):
    def format(self, record: logging.LogRecord) -> str:
        own, fields = self.entries(record)
        # msg and error are always quoted: they are prose, and grep patterns rely on it
        line = f'ts={own["ts"]} level={own["level"]} logger={own["logger"]} msg="{_escape(own["msg"])}"'
        for key, value in fields.items():
            line += f" {key}={_text(value)}"
        if "error" in own:
            line += f' error="{_escape(own["error"])}"'
        return line


class JsonFormatter(_Structured):
    def format(self, record: logging.LogRecord) -> str:
        own, fields = self.entries(record)
        error = {"error": own.pop("error")} if "error" in own else {}
        try:
            return json.dumps({**own, **fields, **error}, default=_json_default, ensure_ascii=False,
                              allow_nan=False, separators=_COMPACT)
        except (TypeError, ValueError):     # a dict with tuple keys, a NaN: the fields as text, not a lost line
            return json.dumps({**own, **{k: str(v) for k, v in fields.items()}, **error}, ensure_ascii=False,
                              separators=_COMPACT)


def _json_default(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _text(value) -> str:
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        text = ",".join(_scalar(v) for v in value)
    else:
        text = _scalar(value)
    return f'"{_escape(text)}"' if _needs_quotes(text) else text


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _needs_quotes(text: str) -> bool:
    return text == "" or any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace(
        "\t", "\\t")


def formatter(format: str) -> logging.Formatter:
    if format not in FORMATS:
        raise ValueError(f"log format {format!r}: choose {' or '.join(FORMATS)}")
    return JsonFormatter() if format == "json" else KeyValueFormatter()


def configure_logging(level: str = "INFO", stream=None, path: str | None = None, format: str = "text") -> None:
    chosen = formatter(format)          # before the file is opened: a bad format leaves no empty file
    handler = logging.FileHandler(path) if path else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(chosen)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
