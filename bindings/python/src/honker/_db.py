"""``honker.open`` / ``honker.attach``, the ``Database`` handle, transactions and the call helpers."""

from __future__ import annotations

import json
import os
import threading
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
    overload,
)

from . import _driver, _hub
from ._json import dumps, loads
from .errors import DatabaseError, ExtensionError, HonkerError, map_error

if TYPE_CHECKING:
    from .cron import Periodic, Scheduler
    from .locks import Lock
    from .pubsub import AsyncListener, Listener
    from .queue import Queue
    from .stream import Stream
    from .tasks import Task
    from .worker import AsyncWorker, Worker

F = TypeVar("F", bound=Callable[..., Any])

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)

#: Anything a write API accepts as ``conn=``: a DB-API connection or cursor, a ``Transaction``,
#: a ``Database``, or a wrapper holding one (SQLAlchemy ``Connection``/``Session`` connection).
ConnLike = Any


class Transaction:
    """``with db.transaction() as tx:`` ``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error).

    Nested inside an open transaction it is a ``SAVEPOINT``. ``tx.execute`` runs SQL on the
    transaction's connection; pass ``conn=tx`` to any write API (or nothing: the database's
    connection of this thread is the one in the transaction).
    """

    __slots__ = ("_savepoint", "connection", "db")

    def __init__(self, db: Database, connection: Any) -> None:
        self.db = db
        self.connection = connection
        self._savepoint: Optional[str] = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db._execute(self.connection, sql, params)

    def __enter__(self) -> Transaction:
        c = self.connection
        if c.in_transaction:
            self._savepoint = f"honker_tx_{id(self):x}"
            c.execute(f"SAVEPOINT {self._savepoint}")
        else:
            c.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        c = self.connection
        sp = self._savepoint
        if et is None:
            if sp is None:
                c.execute("COMMIT")
                self.db._kick()
            else:
                c.execute(f"RELEASE {sp}")
        elif c.in_transaction:
            if sp is None:
                c.execute("ROLLBACK")
            else:
                c.execute(f"ROLLBACK TO {sp}")
                c.execute(f"RELEASE {sp}")


class Database:
    """A honker database file: connections (one per thread), transactions and every primitive.

    Create it with :func:`honker.open` or :func:`honker.attach`.
    """

    def __init__(self, path: str, *, driver: Optional[_driver.Driver] = None,
                 connection: Any = None, setup: bool = True, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.driver = driver or _driver.driver()
        self._error = self.driver.error
        self._setup = setup
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._attached = connection
        self._local = threading.local()
        self._opened: List[Any] = []
        self._lock = threading.Lock()
        self._hub: Optional[_hub.Hub] = None
        self._closed = False
        self._tasks: Dict[str, Task[Any]] = {}
        self._periodic: Dict[str, Periodic] = {}
        self._queues: Dict[str, Queue] = {}
        if connection is None:
            self.connection()  # open (and set up) this thread's connection now: errors surface here

    # --- connections -------------------------------------------------------------------------

    def connect(self) -> Any:
        """A new connection to the file with the extension loaded and set up; the caller closes it."""
        if self.path in ("", ":memory:") or self.path.startswith("file::memory:"):
            raise DatabaseError("db.not_file", "honker needs a database file (not :memory:) for cross-connection wakes")
        c = self.driver.module.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_timeout_ms / 1000)
        try:
            _driver.load_into(c, self.driver)
            if self._setup:
                setup_connection(c, self.driver)
            if self._busy_timeout_ms != 5000 or not self._setup:
                c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}").fetchall()
        except BaseException:
            c.close()
            raise
        return c

    def connection(self) -> Any:
        """This thread's connection (the attached one for :func:`attach`), opened on first use."""
        if self._attached is not None:
            return self._attached
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise DatabaseError("db.closed", "the database was closed")
            c = self.connect()
            self._local.conn = c
            with self._lock:
                self._opened.append(c)
        return c

    def transaction(self, conn: ConnLike = None) -> Transaction:
        """A transaction on ``conn`` (default: this thread's connection)."""
        return Transaction(self, self._conn(conn))

    def execute(self, sql: str, params: Sequence[Any] = (), *, conn: ConnLike = None) -> Any:
        """Run SQL on ``conn`` (default: this thread's connection); honker errors come back typed."""
        return self._execute(self._conn(conn), sql, params)

    @property
    def hub(self) -> _hub.Hub:
        """The process's wake dispatcher of this file (started on first use)."""
        h = self._hub
        if h is None:
            with self._lock:
                h = self._hub
                if h is None or h.key[0] != os.getpid():
                    h = _hub.hub_for(self.path, self.connect, self.driver)
                    self._hub = h
        return h

    def close(self) -> None:
        """Close the connections this object opened and drop its reference on the dispatcher."""
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
            h, self._hub = self._hub, None
        if h is not None:
            _hub.release(h)
        for c in opened:
            try:
                c.close()
            except Exception:
                pass
        self._local = threading.local()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<honker.Database {self.path!r} driver={self.driver.name}>"

    # --- call helpers (every API goes through these) ----------------------------------------

    def _conn(self, conn: ConnLike) -> Any:
        if conn is None:
            if self._attached is not None:
                return self._attached
            c = getattr(self._local, "conn", None)
            return c if c is not None else self.connection()
        return raw_connection(conn)

    def _execute(self, c: Any, sql: str, params: Sequence[Any]) -> Any:
        try:
            return c.execute(sql, params)
        except self._error as e:
            mapped = map_error(e)
            if mapped is None:
                raise
            raise mapped from None

    def _scalar(self, c: Any, sql: str, params: Sequence[Any]) -> Any:
        try:
            return c.execute(sql, params).fetchone()[0]
        except self._error as e:
            mapped = map_error(e)
            if mapped is None:
                raise
            raise mapped from None

    def _write(self, c: Any, sql: str, params: Sequence[Any], kick: bool = True) -> Any:
        """A write: joins the caller's transaction; in autocommit, kicks same-process waiters after
        (``kick=False`` for writes nobody waits for, such as claims and heartbeats: a claim that
        kicked would wake every other worker of the process into a claim of its own, and so on)."""
        if c.isolation_level is not None and not c.in_transaction:
            # The stdlib's legacy mode opens a transaction before DML, not before SELECT: do the
            # same for honker's writes, so they commit or roll back with the caller's.
            c.execute("BEGIN " + c.isolation_level)
        try:
            v = c.execute(sql, params).fetchone()[0]
        except self._error as e:
            mapped = map_error(e)
            if mapped is None:
                raise
            raise mapped from None
        if kick and not c.in_transaction:
            h = self._hub
            if h is not None:
                h.kick()
        return v

    def _check_can_wait(self) -> None:
        """Refuse a blocking wait while this thread's connection has a transaction open (DESIGN §2):
        its snapshot would hide the commit waited for, or its write lock would block it."""
        c = self._attached if self._attached is not None else getattr(self._local, "conn", None)
        if c is not None and c.in_transaction:
            from .errors import WaitInTransaction

            raise WaitInTransaction("wait.in_transaction",
                                    "a blocking wait cannot run inside an open transaction on this thread's connection")

    def _kick(self) -> None:
        h = self._hub
        if h is not None:
            h.kick()

    # --- meta --------------------------------------------------------------------------------

    def info(self) -> Dict[str, Any]:
        """``honker_info()`` when the extension has it, else what can be read without it."""
        c = self._conn(None)
        if self.driver.has("honker_info"):
            return dict(loads(self._scalar(c, "SELECT honker_info()", ())))
        return {
            "version": self._scalar(c, "SELECT honker_version()", ()),
            "schema_version": int(self._scalar(
                c, "SELECT value FROM honker_meta WHERE key = 'schema_version'", ())),
            "journal_mode": self._scalar(c, "PRAGMA journal_mode", ()),
            "wake_backend": self._scalar(c, "SELECT honker_wake_backend()", ()),
        }

    # --- pub/sub -----------------------------------------------------------------------------

    def notify(self, channel: str, payload: Any = None, *, conn: ConnLike = None) -> int:
        """Publish ``payload`` (any JSON value) on ``channel``; returns the notification id.

        Inside the caller's transaction it commits or rolls back with it.
        """
        return int(self._write(self._conn(conn), "SELECT honker_notify(?, ?)", (channel, dumps(payload))))

    def listen(self, channel: str, *, after: Optional[int] = None, timeout: Optional[float] = None,
               batch: int = 100) -> Listener:
        """An iterator over notifications on ``channel`` (from now, or after id ``after``).

        ``timeout``: stop iterating after that many seconds without a notification.
        """
        from .pubsub import Listener

        return Listener(self, channel, after=after, timeout=timeout, batch=batch)

    def alisten(self, channel: str, *, after: Optional[int] = None, timeout: Optional[float] = None,
                batch: int = 100) -> AsyncListener:
        """``async for n in db.alisten(channel)``: the asyncio twin of :meth:`listen`."""
        from .pubsub import AsyncListener

        return AsyncListener(self, channel, after=after, timeout=timeout, batch=batch)

    # --- the other primitives ----------------------------------------------------------------

    def queue(self, name: str, **options: Any) -> Queue:
        """The queue ``name``; keyword options (``lease``, ``max_attempts``, ...) configure it (stored)."""
        from .queue import Queue

        q = self._queues.get(name)
        if q is None:
            q = Queue(self, name)
            self._queues[name] = q
        if options:
            q.configure(**options)
        return q

    def stream(self, topic: str) -> Stream:
        """The durable stream ``topic``."""
        from .stream import Stream

        return Stream(self, topic)

    def lock(self, name: str, ttl: float = 30.0, *, owner: Optional[str] = None,
             blocking: bool = True, timeout: Optional[float] = None) -> Lock:
        """``with db.lock(name, ttl=30) as lock:``: a named lock; ``lock.token`` is its fencing token."""
        from .locks import Lock

        return Lock(self, name, ttl, owner=owner, blocking=blocking, timeout=timeout)

    def rate_limit(self, name: str, limit: int, per: float, *, conn: ConnLike = None) -> bool:
        """Admit one event under ``limit`` per ``per`` seconds (fixed window); False: refused, not counted."""
        return bool(self._write(self._conn(conn), "SELECT honker_rate_limit(?, ?, ?)",
                                (name, limit, _ms(per)), False))

    @overload
    def task(self, fn: F) -> Task[Any]: ...

    @overload
    def task(self, fn: None = None, *, name: Optional[str] = None, queue: str = "default",
             max_attempts: Optional[int] = None, priority: Optional[int] = None,
             timeout: Optional[float] = None, store_result: bool = True,
             result_ttl: Optional[float] = None) -> Callable[[F], Task[Any]]: ...

    def task(self, fn: Optional[F] = None, *, name: Optional[str] = None, queue: str = "default",
             max_attempts: Optional[int] = None, priority: Optional[int] = None,
             timeout: Optional[float] = None, store_result: bool = True,
             result_ttl: Optional[float] = None) -> Union[Task[Any], Callable[[F], Task[Any]]]:
        """``@db.task`` / ``@db.task(queue=..., max_attempts=..., timeout=...)``: a function run by workers.

        ``send_email.delay(...)`` / ``.enqueue(...)`` enqueue a call and return a :class:`TaskResult`.
        """
        from .tasks import Task

        def wrap(f: F) -> Task[Any]:
            t: Task[Any] = Task(self, f, name=name, queue=queue, max_attempts=max_attempts,
                                priority=priority, timeout=timeout, store_result=store_result,
                                result_ttl=result_ttl)
            self._tasks[t.name] = t
            return t

        if fn is not None:
            return wrap(fn)
        return wrap

    @property
    def tasks(self) -> Dict[str, Task[Any]]:
        """The tasks registered with :meth:`task`, by name."""
        return self._tasks

    def periodic(self, cron: str, *, name: Optional[str] = None, tz: Optional[str] = None,
                 queue: str = "default", **options: Any) -> Callable[[F], Task[Any]]:
        """``@db.periodic("0 3 * * *", tz="Europe/Berlin")``: a task the scheduler enqueues on a cron."""
        from .cron import Periodic
        from .tasks import Task

        def wrap(f: F) -> Task[Any]:
            task: Task[Any] = f if isinstance(f, Task) else Task(self, f, queue=queue)
            self._tasks[task.name] = task
            p = Periodic(task, cron, name=name or task.name, tz=tz, options=options)
            self._periodic[p.name] = p
            return task

        return wrap

    def schedule(self, name: str, cron: str, queue: str, payload: Any = None, *, tz: Optional[str] = None,
                 conn: ConnLike = None, **options: Any) -> Optional[int]:
        """Register or update the schedule ``name``; returns its next fire time (ms) or None."""
        from .cron import schedule

        return schedule(self, name, cron, queue, payload, tz=tz, conn=conn, **options)

    def unschedule(self, name: str, *, conn: ConnLike = None) -> bool:
        return bool(self._write(self._conn(conn), "SELECT honker_unschedule(?)", (name,)))

    def pause_schedule(self, name: str, *, conn: ConnLike = None) -> None:
        self._write(self._conn(conn), "SELECT honker_schedule_pause(?)", (name,))

    def resume_schedule(self, name: str, *, conn: ConnLike = None) -> None:
        self._write(self._conn(conn), "SELECT honker_schedule_resume(?)", (name,))

    def schedules(self, upcoming: int = 5) -> List[Dict[str, Any]]:
        """Every schedule, with its next ``upcoming`` fire times."""
        return list(loads(self._scalar(self._conn(None), "SELECT honker_schedules(?)", (upcoming,))))

    def tick(self, now_ms: Optional[int] = None) -> List[Dict[str, Any]]:
        """Fire every due schedule boundary once (``honker_cron_tick``); returns what fired."""
        c = self._conn(None)
        if now_ms is None:
            fired = list(loads(self._write(c, "SELECT honker_cron_tick()", (), kick=False)))
        else:
            fired = list(loads(self._write(c, "SELECT honker_cron_tick(?)", (now_ms,), kick=False)))
        if fired and not c.in_transaction:
            self._kick()
        return fired

    def worker(self, queues: Optional[Sequence[str]] = None, *, concurrency: int = 1, **options: Any) -> Worker:
        """A thread-pool worker running the ``@db.task`` functions of ``queues`` (default: every
        queue a registered task uses). Options as for :class:`honker.Worker`."""
        from .tasks import dispatcher
        from .worker import Worker

        qs = list(queues) if queues else sorted({t.queue for t in self._tasks.values()}) or ["default"]
        tasks = self._tasks

        def timeout_for(job: Any) -> Optional[float]:
            p = job.payload
            t = tasks.get(str(p.get("task"))) if isinstance(p, dict) else None
            return options.get("timeout") if t is None or t.timeout is None else t.timeout

        options.setdefault("timeout_for", timeout_for)
        return Worker(self, qs, dispatcher(self), concurrency=concurrency, **options)

    def aworker(self, queues: Optional[Sequence[str]] = None, *, concurrency: int = 10,
                **options: Any) -> AsyncWorker:
        """The asyncio twin of :meth:`worker`: ``await db.aworker().run()``."""
        from .tasks import async_dispatcher
        from .worker import AsyncWorker

        qs = list(queues) if queues else sorted({t.queue for t in self._tasks.values()}) or ["default"]
        return AsyncWorker(self, qs, async_dispatcher(self), concurrency=concurrency, **options)

    def scheduler(self) -> Scheduler:
        """A runner that registers ``@db.periodic`` schedules and fires due ones until stopped."""
        from .cron import Scheduler

        return Scheduler(self)


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def setup_connection(c: Any, drv: _driver.Driver) -> None:
    """Apply honker's connection settings: ``honker_setup()`` when the extension has it, else the PRAGMAs."""
    if drv.has("honker_setup"):
        try:
            c.execute("SELECT honker_setup()").fetchone()
        except drv.error as e:
            mapped = map_error(e)
            if mapped is None:
                raise
            raise mapped from None
        return
    for p in _PRAGMAS:
        if c.in_transaction and p.startswith("PRAGMA journal_mode"):
            continue
        c.execute(p).fetchall()


def raw_connection(conn: Any) -> Any:
    """The DB-API connection behind ``conn`` (a cursor, ``Transaction``, ``Database``, SQLAlchemy object)."""
    if isinstance(conn, Transaction):
        return conn.connection
    if isinstance(conn, Database):
        return conn._conn(None)
    inner = getattr(conn, "dbapi_connection", None)  # a SQLAlchemy pool proxy (it forwards attributes)
    if inner is not None and inner is not conn:
        return raw_connection(inner)
    if hasattr(conn, "enable_load_extension") and hasattr(conn, "in_transaction"):
        return conn
    if hasattr(conn, "get_bind") and callable(getattr(conn, "connection", None)):
        return raw_connection(conn.connection())  # a SQLAlchemy Session: its connection in this transaction
    inner = getattr(conn, "connection", None)  # a cursor, or a SQLAlchemy Connection
    if inner is not None and inner is not conn:
        return raw_connection(inner)
    raise TypeError(f"not a connection honker can use: {type(conn)!r}")


def open(path: Union[str, os.PathLike[str]], *, driver: Optional[str] = None, setup: bool = True,
         busy_timeout: float = 5.0) -> Database:
    """Open (creating if needed) the database file at ``path`` with the extension loaded and set up.

    ``driver`` forces a driver (``"sqlite3"``, ``"pysqlite3"``, ``"sqlean"``); by default the stdlib
    ``sqlite3`` is used when it can load extensions, else an installed PyPI driver.

    Raises:
        ExtensionError: no driver can load extensions, or the extension is missing or too old.
    """
    drv = _driver.driver() if driver is None else _driver.named(driver)
    return Database(os.fspath(path), driver=drv, setup=setup, busy_timeout=busy_timeout)


def attach(conn: Any, *, setup: bool = True) -> Database:
    """Load the extension into a connection the application owns; every API then runs on it.

    With ``setup`` (default) the connection gets honker's settings (WAL, busy timeout, ...), except
    inside an open transaction. Workers and listeners made from the returned database open their
    own connections to the same file.
    """
    raw = raw_connection(conn)
    drv = _driver.driver_of(raw)
    _driver.load_into(raw, drv)
    if setup and not raw.in_transaction:
        setup_connection(raw, drv)
    row = raw.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    path = str(row[0]) if row and row[0] else ""
    if not path:
        raise DatabaseError("db.not_file", "honker needs a database file (not :memory:) for cross-connection wakes")
    return Database(path, driver=drv, connection=raw, setup=setup)


__all__ = ["Database", "Transaction", "open", "attach", "raw_connection", "ExtensionError",
           "HonkerError", "json"]
