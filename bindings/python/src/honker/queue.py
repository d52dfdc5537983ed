"""The at-least-once job queue: enqueue in the caller's transaction, claim with fencing tokens, ack."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Iterable, List, Optional, Union

from ._json import dumps, loads
from .errors import ArgumentError

if TYPE_CHECKING:
    from ._db import ConnLike, Database
    from .worker import AsyncWorker, Worker

Seconds = Union[int, float, _dt.timedelta]
When = Union[int, float, _dt.datetime]

_QUEUE_OPTIONS = {
    # Python name -> (SQL key, is a duration in seconds)
    "lease": ("lease_ms", True),
    "max_attempts": ("max_attempts", False),
    "backoff_base": ("backoff_base_ms", True),
    "backoff_cap": ("backoff_cap_ms", True),
    "dead_retention": ("dead_retention_ms", True),
    "max_payload_bytes": ("max_payload_bytes", False),
    "paused": ("paused", False),
    "keep_history": ("keep_history_ms", True),
}


def to_ms(value: Seconds, name: str) -> int:
    """Seconds (or a timedelta) as integer milliseconds."""
    if isinstance(value, _dt.timedelta):
        return int(round(value.total_seconds() * 1000))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError("arg.invalid", f"{name} must be seconds (int, float) or a timedelta, got {value!r}")
    return int(round(value * 1000))


def when_ms(value: When, name: str) -> int:
    """A datetime (aware, or naive meaning UTC) or Unix seconds as Unix milliseconds."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError("arg.invalid", f"{name} must be a datetime or Unix seconds, got {value!r}")
    return int(round(value * 1000))


def enqueue_options(delay: Optional[Seconds] = None, run_at: Optional[When] = None,
                    priority: Optional[int] = None, max_attempts: Optional[int] = None,
                    expires: Optional[Union[Seconds, _dt.datetime]] = None,
                    dedup_key: Optional[str] = None) -> Optional[str]:
    """The options object of ``honker_enqueue`` as JSON text, or None for no options."""
    if delay is None and run_at is None and priority is None and max_attempts is None \
            and expires is None and dedup_key is None:
        return None
    o: Dict[str, Any] = {}
    if delay is not None:
        o["delay_ms"] = to_ms(delay, "delay")
    if run_at is not None:
        o["run_at_ms"] = when_ms(run_at, "run_at")
    if priority is not None:
        o["priority"] = priority
    if max_attempts is not None:
        o["max_attempts"] = max_attempts
    if expires is not None:
        if isinstance(expires, _dt.datetime):
            o["expires_at_ms"] = when_ms(expires, "expires")
        else:
            o["expires_in_ms"] = to_ms(expires, "expires")
    if dedup_key is not None:
        o["dedup_key"] = dedup_key
    return json.dumps(o)


@dataclass
class Job:
    """A claimed job. Finish it with exactly one of ``ack``, ``retry``, ``release`` or ``fail``."""

    db: Database = field(repr=False)
    id: int
    queue: str
    payload: Any
    attempts: int
    max_attempts: int
    lease_token: int
    lease_expires_ms: int
    priority: int
    #: In a worker: the slot's connection (in a ``transactional`` worker, inside the transaction
    #: that will commit the ack).
    conn: Any = field(default=None, repr=False)
    #: Set once the job was acked inside :meth:`transaction` (the worker then does not ack it).
    finished: bool = field(default=False, repr=False)

    def transaction(self, result: Any = None) -> _JobTransaction:
        """``with job.transaction() as tx:`` effects written on ``tx`` commit together with the ack.

        ``BEGIN IMMEDIATE`` on the job's connection; at a normal exit the job is acked (with
        ``result`` stored) in the same transaction and committed; on an exception everything rolls
        back and the exception propagates (so a worker retries the job). Do slow work before it:
        the transaction holds the database's write lock.
        """
        return _JobTransaction(self, result)

    @classmethod
    def _from_row(cls, db: Database, r: Dict[str, Any]) -> Job:
        return cls(db, r["id"], r["queue"], r["payload"], r["attempts"], r["max_attempts"],
                   r["lease_token"], r["lease_expires_ms"], r["priority"])

    def ack(self, result: Any = None, *, result_ttl: Optional[Seconds] = None, conn: ConnLike = None) -> None:
        """Delete the job (done); with ``result``, store it for ``honker_result_get`` in the same transaction.

        Raises:
            LeaseLost: the lease expired and another worker claimed the job.
        """
        db = self.db
        c = db._conn(conn if conn is not None else self.conn)
        if result is None:
            db._write(c, "SELECT honker_ack(?, ?)", (self.id, self.lease_token))
            return
        value = dumps(result)
        ttl = None if result_ttl is None else to_ms(result_ttl, "result_ttl")
        if c.in_transaction:
            db._write(c, "SELECT honker_result_save(?, ?, ?)", (self.id, value, ttl))
            db._write(c, "SELECT honker_ack(?, ?)", (self.id, self.lease_token))
        else:
            with db.transaction(c):
                db._write(c, "SELECT honker_result_save(?, ?, ?)", (self.id, value, ttl))
                db._write(c, "SELECT honker_ack(?, ?)", (self.id, self.lease_token))

    def retry(self, delay: Optional[Seconds] = None, error: Optional[str] = None, *,
              conn: ConnLike = None) -> Dict[str, Any]:
        """Give the job back for another attempt after ``delay`` (default: the queue's backoff).

        Returns ``{"state": "retrying", "run_at_ms": ...}`` or ``{"state": "dead"}`` (no attempts left).
        """
        d = None if delay is None else to_ms(delay, "delay")
        return dict(loads(self.db._write(self.db._conn(conn), "SELECT honker_retry(?, ?, ?, ?)",
                                         (self.id, self.lease_token, d, error))))

    def release(self, *, conn: ConnLike = None) -> None:
        """Give the job back now without using an attempt (shutdown)."""
        self.db._write(self.db._conn(conn), "SELECT honker_release(?, ?)", (self.id, self.lease_token))

    def fail(self, error: str, *, conn: ConnLike = None) -> None:
        """Send the job straight to the dead letters."""
        self.db._write(self.db._conn(conn), "SELECT honker_fail(?, ?, ?)", (self.id, self.lease_token, error))

    def heartbeat(self, extend: Seconds, *, conn: ConnLike = None) -> int:
        """Extend the lease by ``extend`` from now; returns the new expiry (ms)."""
        v = int(self.db._write(self.db._conn(conn), "SELECT honker_heartbeat(?, ?, ?)",
                               (self.id, self.lease_token, to_ms(extend, "extend")), False))
        self.lease_expires_ms = v
        return v


class _JobTransaction:
    def __init__(self, job: Job, result: Any) -> None:
        from ._db import Transaction

        self.job = job
        self.result = result
        self.tx = Transaction(job.db, job.db._conn(job.conn))

    def __enter__(self) -> Any:
        return self.tx.__enter__()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            try:
                self.job.ack(self.result, conn=self.tx.connection)
            except BaseException as e:
                self.tx.__exit__(type(e), e, e.__traceback__)
                raise
            self.job.finished = True
        self.tx.__exit__(et, ev, tb)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    pending: int
    scheduled: int
    running: int
    retrying: int
    dead: int
    oldest_pending_age_ms: Optional[int]
    next_due_ms: Optional[int]


class Queue:
    """A named queue of one database. Get it with ``db.queue(name, **options)``."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    def __repr__(self) -> str:
        return f"<honker.Queue {self.name!r}>"

    def configure(self, **options: Any) -> Dict[str, Any]:
        """Store queue options: ``lease``, ``backoff_base``, ``backoff_cap``, ``dead_retention``,
        ``keep_history`` (seconds), ``max_attempts``, ``max_payload_bytes``, ``paused``.
        Returns the queue's options (as stored, in ms)."""
        o: Dict[str, Any] = {}
        for k, v in options.items():
            spec = _QUEUE_OPTIONS.get(k)
            if spec is None:
                raise ArgumentError("queue.unknown_option",
                                    f"unknown option {k!r}; known: {', '.join(_QUEUE_OPTIONS)}")
            key, duration = spec
            o[key] = to_ms(v, k) if duration and v is not None else v
        db = self.db
        return dict(loads(db._write(db._conn(None), "SELECT honker_queue_configure(?, ?)",
                                    (self.name, json.dumps(o)))))

    def enqueue(self, payload: Any = None, *, delay: Optional[Seconds] = None, run_at: Optional[When] = None,
                priority: Optional[int] = None, max_attempts: Optional[int] = None,
                expires: Optional[Union[Seconds, _dt.datetime]] = None, dedup_key: Optional[str] = None,
                conn: ConnLike = None) -> int:
        """Add a job (payload: any JSON value) in the caller's transaction; returns its id.

        ``delay`` seconds or ``run_at`` (datetime / Unix seconds); ``priority`` (higher first);
        ``max_attempts``; ``expires`` (seconds from now or a datetime: not run after it);
        ``dedup_key`` (at most one live job per key: while one is live, its id is returned
        and nothing is written).
        """
        db = self.db
        c = db._conn(conn)
        text = dumps(payload)
        opts = enqueue_options(delay, run_at, priority, max_attempts, expires, dedup_key)
        if opts is None:
            return int(db._write(c, "SELECT honker_enqueue(?, ?)", (self.name, text)))
        return int(db._write(c, "SELECT honker_enqueue(?, ?, ?)", (self.name, text, opts)))

    def enqueue_many(self, payloads: Iterable[Any], *, delay: Optional[Seconds] = None,
                     run_at: Optional[When] = None, priority: Optional[int] = None,
                     max_attempts: Optional[int] = None, expires: Optional[Union[Seconds, _dt.datetime]] = None,
                     conn: ConnLike = None) -> List[int]:
        """Add many jobs in one statement (all or none); returns their ids in order."""
        db = self.db
        c = db._conn(conn)
        text = dumps(list(payloads))
        opts = enqueue_options(delay, run_at, priority, max_attempts, expires, None)
        if opts is None:
            return list(loads(db._write(c, "SELECT honker_enqueue_batch(?, ?)", (self.name, text))))
        return list(loads(db._write(c, "SELECT honker_enqueue_batch(?, ?, ?)", (self.name, text, opts))))

    def claim(self, n: int = 1, *, worker: str = "python", lease: Optional[Seconds] = None,
              conn: ConnLike = None) -> List[Job]:
        """Claim up to ``n`` due jobs now (no waiting)."""
        db = self.db
        c = db._conn(conn)
        lease_ms = None if lease is None else to_ms(lease, "lease")
        rows = loads(db._write(c, "SELECT honker_claim(?, ?, ?, ?)", (self.name, worker, n, lease_ms), False))
        return [Job._from_row(db, r) for r in rows]

    def ack_many(self, jobs: Iterable[Job], *, conn: ConnLike = None) -> int:
        """Ack many claimed jobs in one statement (one transaction); returns how many were acked.

        A job whose lease was lost (expired and claimed again) is skipped, not an error: the
        count says how many of ``jobs`` this call finished.
        """
        db = self.db
        c = db._conn(conn)
        pairs = [[j.id, j.lease_token] for j in jobs]
        if not pairs:
            return 0
        return int(db._write(c, "SELECT honker_ack_batch(?)", (dumps(pairs),)))

    def claim_wait(self, n: int = 1, *, timeout: Optional[float] = None, worker: str = "python",
                   lease: Optional[Seconds] = None, conn: ConnLike = None) -> List[Job]:
        """Claim up to ``n`` jobs, waiting up to ``timeout`` seconds (None: forever) for one to be due."""
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        hub = self.db.hub
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = hub.epoch()
            jobs = self.claim(n, worker=worker, lease=lease, conn=conn)
            if jobs:
                return jobs
            left = self._sleep_for(deadline)
            if left is not None and left <= 0:
                return []
            hub.wait(seen, left)

    async def aclaim_wait(self, n: int = 1, *, timeout: Optional[float] = None, worker: str = "python",
                          lease: Optional[Seconds] = None) -> List[Job]:
        """The asyncio twin of :meth:`claim_wait` (claims run on the loop's thread: they are short)."""
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        hub = self.db.hub
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = hub.epoch()
            jobs = self.claim(n, worker=worker, lease=lease)
            if jobs:
                return jobs
            left = self._sleep_for(deadline)
            if left is not None and left <= 0:
                return []
            await hub.await_past(seen, left)

    def _sleep_for(self, deadline: Optional[float]) -> Optional[float]:
        """Seconds until the deadline or the queue's next due time (whichever is first)."""
        due = self.next_due()
        now = time.monotonic()
        left = None if deadline is None else deadline - now
        if due is not None:
            d = max(due / 1000 - time.time(), 0.001)
            left = d if left is None else min(left, d)
        return left

    def next_due(self) -> Optional[int]:
        """The earliest time (ms) something becomes claimable: a scheduled job or a lease expiry."""
        v = self.db._scalar(self.db._conn(None), "SELECT honker_next_due(?)", (self.name,))
        return None if v is None else int(v)

    def stats(self) -> QueueStats:
        d = loads(self.db._scalar(self.db._conn(None), "SELECT honker_queue_stats(?)", (self.name,)))
        return QueueStats(**d)

    def job(self, job_id: int) -> Optional[Dict[str, Any]]:
        """What is known of a job (state ``pending``/``scheduled``/``running``/``dead``/``done``), or None."""
        v = self.db._scalar(self.db._conn(None), "SELECT honker_job(?)", (job_id,))
        return None if v is None else dict(loads(v))

    def cancel(self, job_id: int, *, conn: ConnLike = None) -> bool:
        """Delete a job that is not running; False when there was none."""
        return bool(self.db._write(self.db._conn(conn), "SELECT honker_cancel(?)", (job_id,)))

    def dead(self, limit: int = 100) -> List[Dict[str, Any]]:
        """Dead letters of this queue, newest first."""
        return list(loads(self.db._scalar(self.db._conn(None), "SELECT honker_dead_list(?, ?)", (self.name, limit))))

    def requeue(self, job_id: Optional[int] = None, *, conn: ConnLike = None) -> int:
        """Put a dead letter (or, with no id, every dead letter of the queue) back; returns how many."""
        c = self.db._conn(conn)
        if job_id is None:
            return int(self.db._write(c, "SELECT honker_dead_requeue_all(?)", (self.name,)))
        return int(self.db._write(c, "SELECT honker_dead_requeue(?)", (job_id,)))

    def purge(self, older_than: Optional[Seconds] = None, *, conn: ConnLike = None) -> int:
        """Delete dead letters (older than ``older_than`` seconds, or all); returns how many."""
        opts = None if older_than is None else json.dumps({"older_than_ms": to_ms(older_than, "older_than")})
        return int(self.db._write(self.db._conn(conn), "SELECT honker_dead_purge(?, ?)", (self.name, opts)))

    def result(self, job_id: int) -> Any:
        """The stored result of a job, or None."""
        v = self.db._scalar(self.db._conn(None), "SELECT honker_result_get(?)", (job_id,))
        return None if v is None else loads(v)

    # --- workers -------------------------------------------------------------------------------

    def worker(self, handler: Callable[[Job], Any], **options: Any) -> Worker:
        """A thread-pool worker (not started): see :class:`honker.Worker` for the options."""
        from .worker import Worker

        return Worker(self.db, [self.name], handler, **options)

    def work(self, handler: Callable[[Job], Any], *, concurrency: int = 1, **options: Any) -> None:
        """Run ``handler(job)`` on jobs of this queue in ``concurrency`` threads until SIGTERM/SIGINT
        (in the main thread) or ``worker.stop()``."""
        self.worker(handler, concurrency=concurrency, **options).run()

    def aworker(self, handler: Callable[[Job], Union[Awaitable[Any], Any]], **options: Any) -> AsyncWorker:
        from .worker import AsyncWorker

        return AsyncWorker(self.db, [self.name], handler, **options)

    async def awork(self, handler: Callable[[Job], Union[Awaitable[Any], Any]], *, concurrency: int = 10,
                    **options: Any) -> None:
        """The asyncio worker: ``await queue.awork(handler)``; cancel the task to stop it."""
        await self.aworker(handler, concurrency=concurrency, **options).run()
