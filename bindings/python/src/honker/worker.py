"""Workers: a thread-pool ``Worker`` and an asyncio ``AsyncWorker`` over one or more queues.

Both follow DESIGN §2: sample the file's epoch, claim, and sleep on the shared dispatcher until a
commit, the queue's next due time (a delayed job or a lease expiry) or the next heartbeat. Handlers
finish a job by returning (ack, with the return value stored as the result when it is not None),
raising :class:`Retry` (retry after its delay), :class:`Fail` (straight to the dead letters) or any
other exception (retry with the queue's backoff). Leases are renewed automatically; a handler that
runs past ``timeout`` has its job retried (the lease token fences off its late ack) and, for sync
handlers, gets an exception raised in its thread. SIGTERM/SIGINT (when ``run`` is in the main thread)
stop claiming, let running handlers finish for up to ``shutdown_timeout`` seconds, then release the
jobs still held without using an attempt; a second signal releases at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import itertools
import logging
import os
import queue as _stdqueue
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence, Union

from ._json import loads
from .errors import HonkerError, LeaseLost, TimeLimitExceeded
from .queue import Job, Seconds, to_ms

if TYPE_CHECKING:
    from ._db import Database

log = logging.getLogger("honker.worker")
_ids = itertools.count(1)


class Retry(Exception):
    """Raise from a handler to retry the job after ``delay`` seconds (None: the queue's backoff)."""

    def __init__(self, delay: Optional[Seconds] = None, error: Optional[str] = None) -> None:
        super().__init__(error or "retry requested")
        self.delay = delay
        self.error = error


class Fail(Exception):
    """Raise from a handler to send the job straight to the dead letters."""


class _Interrupt(BaseException):
    """Raised inside a sync handler's thread when it timed out or the worker shuts down.

    A ``BaseException``, so a handler's ``except Exception`` does not swallow it.
    """


def _raise_in_thread(ident: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_Interrupt))


def _worker_id(name: Optional[str]) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{name or 'py'}-{next(_ids)}"


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


@dataclass(eq=False)
class _Held:
    job: Job
    started: float
    lease_s: float
    next_beat: float
    deadline: Optional[float]
    slot: Optional[_Slot] = None
    timed_out: bool = False
    released: bool = False


@dataclass(eq=False)
class _Slot:
    thread: Optional[threading.Thread] = None
    current: Optional[_Held] = None
    retired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


Handler = Callable[[Job], Any]


class Worker:
    """Runs ``handler(job)`` on jobs of ``queues`` in ``concurrency`` threads.

    Options: ``lease`` (seconds, default the queue's), ``timeout`` (a handler's time limit, seconds),
    ``transactional`` (run the handler and the ack in one ``BEGIN IMMEDIATE`` transaction on the
    slot's connection, ``job.conn``: effect and ack commit together, or neither), ``shutdown_timeout``
    (seconds running handlers get after a stop), ``name`` (in the worker id), ``result_ttl``.
    """

    def __init__(self, db: Database, queues: Sequence[str], handler: Handler, *, concurrency: int = 1,
                 lease: Optional[Seconds] = None, timeout: Optional[float] = None, transactional: bool = False,
                 shutdown_timeout: float = 30.0, name: Optional[str] = None,
                 result_ttl: Optional[Seconds] = None,
                 on_done: Optional[Callable[[Job, str, float], None]] = None,
                 timeout_for: Optional[Callable[[Job], Optional[float]]] = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.db = db
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.lease_ms = None if lease is None else to_ms(lease, "lease")
        self.timeout = timeout
        self.transactional = transactional
        self.shutdown_timeout = shutdown_timeout
        self.result_ttl = result_ttl
        self.on_done = on_done
        self.timeout_for = timeout_for
        self.id = _worker_id(name)
        self._inbox: _stdqueue.SimpleQueue[Optional[_Held]] = _stdqueue.SimpleQueue()
        self._held: Dict[int, _Held] = {}
        self._slots: List[_Slot] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._release_now = False
        self._thread: Optional[threading.Thread] = None
        self._running = threading.Event()
        self._hub = db.hub
        self.processed = 0

    # --- control -----------------------------------------------------------------------------

    def start(self) -> Worker:
        """Run in a background thread; returns self (call ``stop()`` to end it)."""
        self._thread = threading.Thread(target=self.run, kwargs={"install_signal_handlers": False},
                                        name=f"honker-worker {self.id}", daemon=True)
        self._thread.start()
        self._running.wait(10)
        return self

    def stop(self, timeout: Optional[float] = None, *, wait: bool = True) -> None:
        """Stop claiming; running handlers get ``timeout`` (default ``shutdown_timeout``) seconds, then
        their jobs are released. With ``wait``, return once the worker has stopped (background only)."""
        if timeout is not None:
            self.shutdown_timeout = timeout
        if self._stopping:
            self._release_now = True
        self._stopping = True
        self._hub.kick()
        t = self._thread
        if wait and t is not None and t is not threading.current_thread():
            t.join()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the main loop -----------------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Work until ``stop()`` or SIGTERM/SIGINT; blocks."""
        restore = self._install_signals() if install_signal_handlers else {}
        conn = self.db.connect()
        hub = self._hub
        try:
            for _ in range(self.concurrency):
                self._add_slot()
            self._running.set()
            log.info("worker %s: queues %s, concurrency %d", self.id, ",".join(self.queues), self.concurrency)
            rr = 0
            while not self._stopping:
                seen = hub.epoch()
                claimed = 0
                free = self._free()
                if free > 0:
                    for i in range(len(self.queues)):
                        q = self.queues[(rr + i) % len(self.queues)]
                        jobs = self._claim(conn, q, free)
                        claimed += len(jobs)
                        free -= len(jobs)
                        if free <= 0:
                            break
                    rr += 1
                wake_at = self._supervise(conn)
                if claimed and free > 0:
                    continue  # drain while there is work and room
                if free > 0:
                    wake_at = _earliest(wake_at, self._next_due(conn))
                hub.wait(seen, None if wake_at is None else max(wake_at - time.monotonic(), 0.0))
            self._drain(conn)
        finally:
            for _ in self._slots:
                self._inbox.put(None)
            for s in list(self._slots):
                if s.thread is not None and not s.retired:
                    s.thread.join(timeout=5)
            conn.close()
            for sig, h in restore.items():
                signal.signal(sig, h)
            log.info("worker %s: stopped after %d jobs", self.id, self.processed)

    def _free(self) -> int:
        with self._lock:
            return self.concurrency - len(self._held)

    def _claim(self, conn: Any, queue: str, n: int) -> List[Job]:
        try:
            args = (queue, self.id, n, self.lease_ms)
            rows = loads(self.db._write(conn, "SELECT honker_claim(?, ?, ?, ?)", args, False))
        except self.db.driver.error as e:  # SQLITE_BUSY: try again on the next round
            log.warning("worker %s: claim on %s: %s", self.id, queue, e)
            return []
        now = time.monotonic()
        wall = time.time() * 1000
        jobs = []
        for r in rows:
            job = Job._from_row(self.db, r)
            lease_s = max((job.lease_expires_ms - wall) / 1000, 0.05)
            limit = self.timeout if self.timeout_for is None else self.timeout_for(job)
            held = _Held(job, now, lease_s, now + lease_s / 3, None if limit is None else now + limit)
            with self._lock:
                self._held[job.id] = held
            self._inbox.put(held)
            jobs.append(job)
        return jobs

    def _next_due(self, conn: Any) -> Optional[float]:
        due: Optional[int] = None
        for q in self.queues:
            v = conn.execute("SELECT honker_next_due(?)", (q,)).fetchone()[0]
            if v is not None and (due is None or v < due):
                due = int(v)
        if due is None:
            return None
        return time.monotonic() + max(due / 1000 - time.time(), 0.001)

    def _supervise(self, conn: Any) -> Optional[float]:
        """Heartbeats and time limits of held jobs; returns when it next has something to do."""
        now = time.monotonic()
        wake_at: Optional[float] = None
        with self._lock:
            held = list(self._held.values())
        for h in held:
            if h.timed_out or h.released:
                continue
            if h.deadline is not None and now >= h.deadline:
                self._time_out(conn, h)
                continue
            if not self.transactional and now >= h.next_beat:
                try:
                    self.db._write(conn, "SELECT honker_heartbeat(?, ?, ?)",
                                   (h.job.id, h.job.lease_token, int(h.lease_s * 1000)), False)
                except LeaseLost:
                    log.warning("worker %s: job %d lost its lease while running", self.id, h.job.id)
                except self.db.driver.error as e:
                    log.warning("worker %s: heartbeat of job %d: %s", self.id, h.job.id, e)
                h.next_beat = now + h.lease_s / 3
            wake_at = _earliest(wake_at, h.deadline)
            if not self.transactional:
                wake_at = _earliest(wake_at, h.next_beat)
        return wake_at

    def _time_out(self, conn: Any, h: _Held) -> None:
        h.timed_out = True
        limit = h.deadline - h.started if h.deadline is not None else 0.0
        log.warning("worker %s: job %d ran past its %.3gs time limit: retrying it", self.id, h.job.id, limit)
        self._interrupt(h)
        try:
            self.db._write(conn, "SELECT honker_retry(?, ?, NULL, ?)",
                           (h.job.id, h.job.lease_token, f"worker.timeout: ran past {limit:.3g}s"))
        except (LeaseLost, self.db.driver.error):
            pass  # it finished (or lost the lease) meanwhile
        self._forget(h)

    def _interrupt(self, h: _Held) -> None:
        """Raise in the handler's thread and put a fresh slot in its place (the old one may be stuck in C)."""
        s = h.slot
        if s is None:
            return
        with s.lock:
            if s.current is h and s.thread is not None and s.thread.ident is not None:
                s.retired = True
                _raise_in_thread(s.thread.ident)
        if s.retired and not self._stopping:
            self._add_slot()

    def _forget(self, h: _Held) -> None:
        with self._lock:
            if self._held.get(h.job.id) is h:
                del self._held[h.job.id]
        self._hub.kick()

    def _drain(self, conn: Any) -> None:
        """Graceful stop: give running handlers ``shutdown_timeout``, then release what is still held."""
        deadline = time.monotonic() + self.shutdown_timeout
        while True:
            with self._lock:
                if not self._held:
                    return
            if self._release_now or time.monotonic() >= deadline:
                break
            seen = self._hub.epoch()
            wake_at = _earliest(self._supervise(conn), deadline)
            self._hub.wait(seen, max((wake_at or deadline) - time.monotonic(), 0.0))
        with self._lock:
            held = list(self._held.values())
        for h in held:
            h.released = True
            if self.transactional:
                self._interrupt(h)  # roll its transaction back first: it holds the write lock
            try:
                self.db._write(conn, "SELECT honker_release(?, ?)", (h.job.id, h.job.lease_token))
                log.info("worker %s: released job %d (shutdown)", self.id, h.job.id)
            except (LeaseLost, self.db.driver.error):
                pass
            if not self.transactional:
                self._interrupt(h)
            self._forget(h)

    # --- slots -------------------------------------------------------------------------------

    def _add_slot(self) -> None:
        s = _Slot()
        t = threading.Thread(target=self._slot_main, args=(s,), name=f"honker-slot {self.id}", daemon=True)
        s.thread = t
        with self._lock:
            self._slots.append(s)
        t.start()

    def _slot_main(self, s: _Slot) -> None:
        conn = self.db.connect()
        if self.db._attached is None:
            self.db._local.conn = conn  # db.execute(...) in a handler runs in the job's transaction
        try:
            while not s.retired:
                try:
                    h = self._inbox.get()
                    if h is None:
                        break
                    with s.lock:
                        s.current = h
                        h.slot = s
                    try:
                        self._run_one(conn, h)
                    finally:
                        with s.lock:
                            s.current = None
                        self._forget(h)
                except _Interrupt:
                    pass  # landed after the handler returned: nothing to undo
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def _run_one(self, conn: Any, h: _Held) -> None:
        job = h.job
        db = self.db
        t0 = time.monotonic()
        outcome = "done"
        try:
            if h.released or h.timed_out:
                return
            try:
                if self.transactional:
                    with db.transaction(conn):
                        job.conn = conn
                        result = self.handler(job)
                        job.ack(result, result_ttl=self.result_ttl, conn=conn)
                else:
                    job.conn = conn
                    result = self.handler(job)
                    if not job.finished:
                        job.ack(result, result_ttl=self.result_ttl, conn=conn)
            except _Interrupt:
                outcome = "timeout" if h.timed_out else "released"
            except LeaseLost:
                outcome = "lease_lost"
                log.warning("worker %s: job %d: lease lost (another worker has it now)", self.id, job.id)
            except Retry as r:
                outcome = "retry"
                delay, err = r.delay, r.error or "retry requested"
                self._finish(lambda: job.retry(delay, err, conn=conn))
            except Fail as f:
                outcome = "failed"
                err = str(f) or "failed"
                self._finish(lambda: job.fail(err, conn=conn))
            except Exception as e:  # any handler error is a retry
                outcome = "error"
                why = _describe(e)
                log.warning("worker %s: job %d raised %s", self.id, job.id, why)
                self._finish(lambda: job.retry(None, why[:2000], conn=conn))
        except _Interrupt:
            outcome = "timeout" if h.timed_out else "released"
        self.processed += 1
        dt = time.monotonic() - t0
        log.info("job %d %s %s in %.1f ms (attempt %d)", job.id, job.queue, outcome, dt * 1000, job.attempts)
        if self.on_done is not None:
            self.on_done(job, outcome, dt)

    def _finish(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except LeaseLost:
            pass  # timed out or released meanwhile: the claim that replaced ours decides

    def _install_signals(self) -> Dict[signal.Signals, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: Dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: Optional[FrameType]) -> None:
            log.info("worker %s: %s: stopping (again to release jobs now)", self.id, signal.Signals(signum).name)
            self.stop(wait=False)

        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, on_signal)
        return old


def _earliest(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


AsyncHandler = Callable[[Job], Union[Awaitable[Any], Any]]


class AsyncWorker:
    """The asyncio worker: ``await worker.run()``; ``concurrency`` handlers at once on the loop.

    Coroutine handlers run on the loop; plain functions in the loop's default executor. Database
    calls (claim, ack, heartbeat) run on one dedicated thread, so a busy database never blocks the
    loop. Cancelling the task that runs ``run()`` cancels the running handlers, releases their jobs
    and returns promptly.
    """

    def __init__(self, db: Database, queues: Sequence[str], handler: AsyncHandler, *, concurrency: int = 10,
                 lease: Optional[Seconds] = None, timeout: Optional[float] = None, shutdown_timeout: float = 30.0,
                 name: Optional[str] = None, result_ttl: Optional[Seconds] = None,
                 on_done: Optional[Callable[[Job, str, float], None]] = None) -> None:
        self.db = db
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.lease_ms = None if lease is None else to_ms(lease, "lease")
        self.timeout = timeout
        self.shutdown_timeout = shutdown_timeout
        self.result_ttl = result_ttl
        self.on_done = on_done
        self.id = _worker_id(name)
        self._stop: Optional[asyncio.Event] = None
        self._hub = db.hub
        self.processed = 0
        self._conn: Any = None
        self._jobs: Dict[int, Job] = {}

    def stop(self) -> None:
        """Stop after the running handlers finish (call from the loop's thread)."""
        if self._stop is not None:
            self._stop.set()
        self._hub.kick()

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ex = ThreadPoolExecutor(1, thread_name_prefix="honker-db")

        async def db_call(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(ex, fn, *args)

        self._conn = await db_call(self.db.connect)
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        running: Dict[int, asyncio.Task[None]] = {}
        beats: Dict[int, List[float]] = {}
        hub = self._hub
        try:
            while not self._stop.is_set():
                seen = hub.epoch()
                free = self.concurrency - len(running)
                claimed = 0
                for q in self.queues:
                    if free <= 0:
                        break
                    jobs: List[Job] = await db_call(self._claim, q, free)
                    for job in jobs:
                        lease_s = max((job.lease_expires_ms - time.time() * 1000) / 1000, 0.05)
                        beats[job.id] = [time.monotonic() + lease_s / 3, lease_s]
                        running[job.id] = loop.create_task(self._handle(job, db_call, running, beats))
                    claimed += len(jobs)
                    free -= len(jobs)
                now = time.monotonic()
                wake_at: Optional[float] = None
                for jid, (at, lease_s) in list(beats.items()):
                    if now >= at:
                        await db_call(self._beat, jid, running, lease_s)
                        beats[jid][0] = now + lease_s / 3
                    wake_at = _earliest(wake_at, beats[jid][0])
                if claimed and free > 0:
                    continue
                if free > 0:
                    wake_at = _earliest(wake_at, await db_call(self._next_due))
                await hub.await_past(seen, None if wake_at is None else max(wake_at - time.monotonic(), 0.0))
            if running:
                await asyncio.wait(list(running.values()), timeout=self.shutdown_timeout)
        finally:
            for t in list(running.values()):
                t.cancel()
            if running:
                # Wait for the cancelled handlers to release their jobs, even if we are being cancelled.
                await asyncio.shield(asyncio.wait(list(running.values()), timeout=10))
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            conn = self._conn
            self._conn = None
            ex.submit(conn.close)
            ex.shutdown(wait=False)

    def _claim(self, queue: str, n: int) -> List[Job]:
        try:
            rows = loads(self.db._write(self._conn, "SELECT honker_claim(?, ?, ?, ?)",
                                        (queue, self.id, n, self.lease_ms), False))
        except self.db.driver.error as e:
            log.warning("worker %s: claim on %s: %s", self.id, queue, e)
            return []
        return [Job._from_row(self.db, r) for r in rows]

    def _next_due(self) -> Optional[float]:
        due: Optional[int] = None
        for q in self.queues:
            v = self._conn.execute("SELECT honker_next_due(?)", (q,)).fetchone()[0]
            if v is not None and (due is None or v < due):
                due = int(v)
        return None if due is None else time.monotonic() + max(due / 1000 - time.time(), 0.001)

    def _beat(self, job_id: int, running: Dict[int, Any], lease_s: float) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        try:
            job.heartbeat(lease_s, conn=self._conn)
        except (LeaseLost, self.db.driver.error) as e:
            log.warning("worker %s: heartbeat of job %d: %s", self.id, job_id, e)

    async def _handle(self, job: Job, db_call: Callable[..., Awaitable[Any]], running: Dict[int, Any],
                      beats: Dict[int, List[float]]) -> None:
        self._jobs[job.id] = job
        t0 = time.monotonic()
        outcome = "done"
        conn = self._conn
        try:
            try:
                if inspect.iscoroutinefunction(self.handler):
                    result = await asyncio.wait_for(self.handler(job), self.timeout)
                else:
                    loop = asyncio.get_running_loop()
                    result = await asyncio.wait_for(loop.run_in_executor(None, self.handler, job), self.timeout)
                    if inspect.isawaitable(result):
                        result = await asyncio.wait_for(result, self.timeout)
                await db_call(lambda: job.ack(result, result_ttl=self.result_ttl, conn=conn))
            except asyncio.CancelledError:
                outcome = "released"
                await asyncio.shield(db_call(self._quiet, lambda: job.release(conn=conn)))
                raise
            except asyncio.TimeoutError:
                outcome = "timeout"
                await db_call(self._quiet, lambda: job.retry(None, f"worker.timeout: ran past {self.timeout}s",
                                                             conn=conn))
            except LeaseLost:
                outcome = "lease_lost"
            except Retry as r:
                outcome = "retry"
                delay, err = r.delay, r.error or "retry requested"
                await db_call(self._quiet, lambda: job.retry(delay, err, conn=conn))
            except Fail as f:
                outcome = "failed"
                err = str(f) or "failed"
                await db_call(self._quiet, lambda: job.fail(err, conn=conn))
            except Exception as e:
                outcome = "error"
                why = _describe(e)
                log.warning("worker %s: job %d raised %s", self.id, job.id, why)
                await db_call(self._quiet, lambda: job.retry(None, why[:2000], conn=conn))
        finally:
            running.pop(job.id, None)
            beats.pop(job.id, None)
            self._jobs.pop(job.id, None)
            self.processed += 1
            dt = time.monotonic() - t0
            log.info("job %d %s %s in %.1f ms (attempt %d)", job.id, job.queue, outcome, dt * 1000, job.attempts)
            if self.on_done is not None:
                self.on_done(job, outcome, dt)
            self._hub.kick()

    @staticmethod
    def _quiet(call: Callable[[], Any]) -> None:
        try:
            call()
        except LeaseLost:
            pass


__all__ = ["Worker", "AsyncWorker", "Retry", "Fail", "HonkerError", "TimeLimitExceeded"]
