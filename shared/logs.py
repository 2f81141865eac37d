"""One log format for both sides: ``time level logger message key=value ...``.

Single lines with key=value pairs are easy to grep on a device and to parse
in a log pipeline. Callers pass structured fields with ``extra={"fields": {...}}``
or simply format them into the message; never a payload, never a raw MAC.
"""

from __future__ import annotations

import logging
import sys


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname} {record.name} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def version() -> str:
    """The installed footfall version (reported in status messages and /healthz)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("footfall")
    except PackageNotFoundError:
        return "0+unknown"
