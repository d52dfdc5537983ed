"""The exception hierarchy: one class per area, mapped from the extension's ``honker: <code>:`` prefix.

Every honker error carries the stable ``code`` string (``queue.lease_lost``, ``payload.not_json``, ...),
identical in every language. ``SQLITE_BUSY`` is never mapped: it stays the driver's own
``OperationalError`` so callers retry it as they would any busy statement.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

__all__ = [
    "HonkerError",
    "ExtensionError",
    "ArgumentError",
    "PayloadError",
    "PayloadTooLarge",
    "QueueError",
    "LeaseLost",
    "DedupConflict",
    "StreamError",
    "Trimmed",
    "CronError",
    "NotifyError",
    "WakeError",
    "WaitCancelled",
    "WaitInTransaction",
    "DatabaseError",
    "ReadOnly",
    "SchemaTooNew",
    "SetupInTransaction",
    "TaskError",
    "TimeLimitExceeded",
    "error_for",
    "map_error",
]


class HonkerError(Exception):
    """Base class of every error raised by honker; ``code`` is the stable ``area.reason`` string."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ExtensionError(HonkerError):
    """The extension or a SQLite driver that can load it was not found, or is too old (``ext.*``)."""


class ArgumentError(HonkerError, ValueError):
    """An argument or option was refused (``arg.invalid``, ``options.unknown``, ``*.bad_option``, ...)."""


class PayloadError(ArgumentError):
    """A payload is not JSON every reader can parse (``payload.not_json``)."""


class PayloadTooLarge(PayloadError):
    """A payload is over the queue's size limit (``payload.too_large``)."""


class QueueError(HonkerError):
    """A queue operation failed (``queue.*``)."""


class LeaseLost(QueueError):
    """The job's lease expired or was taken by another claim; this worker may not finish it."""


class DedupConflict(QueueError):
    """A job with the same dedup key is already live (``queue.dedup_conflict``)."""


class StreamError(HonkerError):
    """A stream operation failed (``stream.*``)."""


class Trimmed(StreamError):
    """The stream was trimmed past the offset asked for (``stream.trimmed``)."""


class CronError(HonkerError):
    """A schedule was refused or not found (``cron.*``)."""


class NotifyError(HonkerError):
    """A pub/sub call was refused (``notify.*``)."""


class WakeError(HonkerError):
    """The process's watcher of the file failed (``wake.*``)."""


class WaitCancelled(WakeError):
    """A blocking wait was cancelled (``wait.cancelled``)."""


class WaitInTransaction(WakeError):
    """A blocking wait was called inside an open transaction (``wait.in_transaction``)."""


class DatabaseError(HonkerError):
    """The database file cannot serve the call (``db.*``)."""


class ReadOnly(DatabaseError):
    """A write on a read-only database (``db.read_only``)."""


class SchemaTooNew(DatabaseError):
    """The file's honker schema is newer than this extension (``schema.too_new``)."""


class SetupInTransaction(DatabaseError):
    """``honker_setup()`` was called inside an open transaction (``setup.in_transaction``)."""


class TaskError(HonkerError):
    """A task failed for good (went to the dead letters); raised by ``TaskResult.result()``."""


class TimeLimitExceeded(HonkerError):
    """A handler ran past its time limit (``worker.timeout``); the job is retried."""

    def __init__(self, code: str = "worker.timeout", message: str = "handler ran past its time limit") -> None:
        super().__init__(code, message)


_EXACT: Dict[str, Type[HonkerError]] = {
    "queue.lease_lost": LeaseLost,
    "queue.dedup_conflict": DedupConflict,
    "stream.trimmed": Trimmed,
    "payload.not_json": PayloadError,
    "payload.too_large": PayloadTooLarge,
    "wait.cancelled": WaitCancelled,
    "wait.in_transaction": WaitInTransaction,
    "db.read_only": ReadOnly,
    "schema.too_new": SchemaTooNew,
    "setup.in_transaction": SetupInTransaction,
    "worker.timeout": TimeLimitExceeded,
}

_AREA: Dict[str, Type[HonkerError]] = {
    "arg": ArgumentError,
    "options": ArgumentError,
    "payload": PayloadError,
    "queue": QueueError,
    "stream": StreamError,
    "cron": CronError,
    "notify": NotifyError,
    "wake": WakeError,
    "wait": WakeError,
    "db": DatabaseError,
    "schema": DatabaseError,
    "setup": DatabaseError,
    "ext": ExtensionError,
    "task": TaskError,
}

# Refused input, whatever its area: these are also ValueErrors.
_ARGUMENT_REASONS = ("bad_option", "unknown_option", "bad_name", "bad_expression", "unknown_zone",
                     "bad_channel", "bad_topic", "bad_key", "bad_consumer", "offset_ahead")

_PREFIX = re.compile(r"^honker: ([a-z_]+\.[a-z_]+): (.*)$", re.DOTALL)


def error_for(code: str, message: str) -> HonkerError:
    """The typed error for ``code`` (the most specific class that matches)."""
    cls = _EXACT.get(code)
    if cls is None:
        area, _, reason = code.partition(".")
        base = _AREA.get(area, HonkerError)
        if reason in _ARGUMENT_REASONS and not issubclass(base, ArgumentError):
            cls = _argument_class(base)
        else:
            cls = base
    return cls(code, message)


_MIXED: Dict[Type[HonkerError], Type[HonkerError]] = {}


def _argument_class(base: Type[HonkerError]) -> Type[HonkerError]:
    """``queue.bad_option`` is both a ``QueueError`` and an ``ArgumentError``."""
    cls = _MIXED.get(base)
    if cls is None:
        cls = type(base.__name__.replace("Error", "") + "ArgumentError", (base, ArgumentError), {})
        cls.__module__ = __name__
        _MIXED[base] = cls
    return cls


def map_error(exc: BaseException) -> Optional[HonkerError]:
    """The typed error for a driver exception whose message has the ``honker: <code>:`` prefix, else None."""
    m = _PREFIX.match(str(exc))
    if m is None:
        return None
    return error_for(m.group(1), m.group(2))
