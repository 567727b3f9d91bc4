"""Structured logs: one line per event, key=value, on stderr or a file."""
import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = f'ts={ts} level={record.levelname.lower()} logger={record.name} msg="{_escape(record.getMessage())}"'
        if record.exc_info:
            line += f' error="{_escape(self.formatException(record.exc_info))}"'
        return line


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def configure_logging(level: str = "INFO", stream=None, path: str | None = None) -> None:
    handler = logging.FileHandler(path) if path else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
