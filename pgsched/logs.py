"""Log output of pgsched processes: ``text`` or ``json`` lines on stderr, with every structured field.

Leaf module. Log calls across pgsched put their details in ``extra={...}`` (event, job_id, task,
error, ...); both formats show them: JSON as keys (python-json-logger), text as ``key=value`` after
the message. Inside a running job, lines also carry the job's id, task, queue, attempt and worker id.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

from pgsched.context import current_job

__all__ = ["LOG_FORMATS", "JobContextFilter", "TextFormatter", "configure_logging", "extra_fields"]

LOG_FORMATS: Final = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_JSON = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: anything else on a record came from ``extra`` (or the filter below).
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JobContextFilter(logging.Filter):
    """Adds the running job's id, task, queue, attempt and worker id to lines logged inside a job."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            job = current_job()
        except LookupError:
            return True
        for name, value in (
            ("job_id", job.id),
            ("task", job.task),
            ("queue", job.queue),
            ("attempt", job.attempt),
            ("worker_id", job.worker_id),
        ):
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...``, then the traceback, if any, on the lines below."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in extra_fields(record).items() if v is not None)
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in '"=' for c in value) else json.dumps(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs (told apart from handlers others installed)."""


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send the root logger's lines to stderr in ``log_format`` (``text`` or ``json``).

    Like ``logging.basicConfig``: nothing happens when the root logger already has handlers that
    someone else installed (an application embedding the CLI, pytest); a second call replaces ours."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _StderrHandler)]
    if len(ours) != len(root.handlers):
        return
    for old in ours:
        root.removeHandler(old)
    handler = _StderrHandler(sys.stderr)
    handler.addFilter(JobContextFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                _JSON, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}, json_default=str
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
