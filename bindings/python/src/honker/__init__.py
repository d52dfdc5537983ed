"""honker for Python: Postgres-style NOTIFY/LISTEN, durable job queues, streams and cron on SQLite.

Every primitive is a row written in your own transaction, in your own database file; processes on
one host wake each other by watching that file. This package is a thin layer over the one SQLite
extension, ``libhonker_ext.so``, which it carries::

    import honker
    db = honker.open("app.db")
    emails = db.queue("emails")
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders (id) VALUES (?)", (42,))
        emails.enqueue({"order": 42})        # commits or rolls back with the order
"""

from __future__ import annotations

from ._db import Database, Transaction, attach, open, raw_connection
from ._driver import extension_path
from .cron import Scheduler
from .errors import (
    ArgumentError,
    CronError,
    DatabaseError,
    DedupConflict,
    ExtensionError,
    HonkerError,
    LeaseLost,
    NotifyError,
    PayloadError,
    PayloadTooLarge,
    QueueError,
    ReadOnly,
    SchemaTooNew,
    SetupInTransaction,
    StreamError,
    TaskError,
    TimeLimitExceeded,
    Trimmed,
    WaitCancelled,
    WaitInTransaction,
    WakeError,
)
from .locks import Lock, LockNotAcquired
from .pubsub import AsyncListener, Listener, Notification
from .queue import Job, Queue, QueueStats
from .stream import AsyncSubscription, Event, Stream, Subscription
from .tasks import Task, TaskResult
from .worker import AsyncWorker, Fail, Retry, Worker

__version__ = "0.1.0"


def driver_name() -> str:
    """The SQLite driver ``honker.open`` uses in this process: ``sqlite3``, ``pysqlite3`` or ``sqlean``."""
    from ._driver import driver

    return driver().name


def connect_module() -> object:
    """The DB-API module of that driver (for SQLAlchemy's ``module=`` or your own ``connect``)."""
    from ._driver import driver

    return driver().module


__all__ = [
    "open", "attach", "extension_path", "driver_name", "connect_module", "raw_connection",
    "Database", "Transaction",
    "Notification", "Listener", "AsyncListener",
    "Queue", "Job", "QueueStats", "Worker", "AsyncWorker", "Retry", "Fail",
    "Task", "TaskResult",
    "Stream", "Event", "Subscription", "AsyncSubscription",
    "Scheduler", "Lock", "LockNotAcquired",
    "HonkerError", "ExtensionError", "ArgumentError", "PayloadError", "PayloadTooLarge", "QueueError",
    "LeaseLost", "DedupConflict", "StreamError", "Trimmed", "CronError", "NotifyError", "WakeError",
    "WaitCancelled", "WaitInTransaction", "DatabaseError", "ReadOnly", "SchemaTooNew",
    "SetupInTransaction", "TaskError", "TimeLimitExceeded",
]
