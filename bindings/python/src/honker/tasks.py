"""``@db.task``: functions run by workers, enqueued with ``.delay(...)`` / ``.enqueue(...)``.

A call is a job on the task's queue whose payload is ``{"task": name, "args": [...], "kwargs": {...}}``.
The worker stores the return value as ``{"value": ...}`` in the same transaction as the ack, and
:class:`TaskResult` waits for it (``result(timeout)`` or ``await``), raising :class:`TaskError` if the
job went to the dead letters.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generator,
    Generic,
    Iterable,
    List,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from ._json import loads
from .errors import HonkerError, TaskError
from .queue import Job, Seconds, When

if TYPE_CHECKING:
    from ._db import ConnLike, Database

R = TypeVar("R")


class Task(Generic[R]):
    """A registered task. Calling it runs the function here and now; ``delay`` enqueues it."""

    def __init__(self, db: Database, fn: Callable[..., R], *, name: Optional[str] = None, queue: str = "default",
                 max_attempts: Optional[int] = None, priority: Optional[int] = None,
                 timeout: Optional[float] = None, store_result: bool = True,
                 result_ttl: Optional[float] = None) -> None:
        self.db = db
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = queue
        self.max_attempts = max_attempts
        self.priority = priority
        self.timeout = timeout
        self.store_result = store_result
        self.result_ttl = result_ttl
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<honker.Task {self.name} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> TaskResult[R]:
        """Enqueue a call with these arguments (in this thread's transaction, if one is open)."""
        return self.apply_async(args, kwargs)

    enqueue = delay

    def apply_async(self, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None, *,
                    delay: Optional[Seconds] = None, run_at: Optional[When] = None,
                    priority: Optional[int] = None, max_attempts: Optional[int] = None,
                    expires: Optional[Union[Seconds, _dt.datetime]] = None, dedup_key: Optional[str] = None,
                    conn: ConnLike = None) -> TaskResult[R]:
        """Enqueue a call with enqueue options; ``conn=`` puts it in that connection's transaction."""
        payload = {"task": self.name, "args": list(args), "kwargs": kwargs or {}}
        q = self.db.queue(self.queue)
        job_id = q.enqueue(payload, delay=delay, run_at=run_at,
                           priority=self.priority if priority is None else priority,
                           max_attempts=self.max_attempts if max_attempts is None else max_attempts,
                           expires=expires, dedup_key=dedup_key, conn=conn)
        return TaskResult(self.db, job_id, self.queue)

    def map(self, calls: Iterable[Sequence[Any]], *, conn: ConnLike = None) -> List[TaskResult[R]]:
        """Enqueue one call per argument tuple, in one statement."""
        payloads = [{"task": self.name, "args": list(a), "kwargs": {}} for a in calls]
        ids = self.db.queue(self.queue).enqueue_many(payloads, priority=self.priority,
                                                     max_attempts=self.max_attempts, conn=conn)
        return [TaskResult(self.db, i, self.queue) for i in ids]

    def run_job(self, job: Job) -> Any:
        """What a worker calls: the function on the job's arguments, its value wrapped for storage."""
        p = job.payload
        value = self.fn(*p.get("args", ()), **p.get("kwargs", {}))
        return {"value": value} if self.store_result else None

    async def arun_job(self, job: Job) -> Any:
        p = job.payload
        value = self.fn(*p.get("args", ()), **p.get("kwargs", {}))
        if inspect.isawaitable(value):
            value = await value
        return {"value": value} if self.store_result else None


class TaskResult(Generic[R]):
    """A handle on an enqueued call: ``id``, ``status()``, ``result(timeout)``, ``await handle``."""

    def __init__(self, db: Database, job_id: int, queue: str) -> None:
        self.db = db
        self.id = job_id
        self.queue = queue

    def __repr__(self) -> str:
        return f"<honker.TaskResult job={self.id} queue={self.queue!r}>"

    def status(self) -> str:
        """``pending``, ``scheduled``, ``running``, ``dead``, ``done`` or ``unknown``."""
        if self._stored() is not None:
            return "done"
        j = self.db.queue(self.queue).job(self.id)
        return "unknown" if j is None else str(j["state"])

    def _stored(self) -> Optional[Dict[str, Any]]:
        v = self.db._scalar(self.db._conn(None), "SELECT honker_result_get(?)", (self.id,))
        return None if v is None else dict(loads(v))

    def _check(self) -> Optional[Dict[str, Any]]:
        r = self._stored()
        if r is not None:
            return r
        j = self.db.queue(self.queue).job(self.id)
        if j is None:
            # Acked between the two reads? The result commits with the ack: look once more.
            r = self._stored()
            if r is not None:
                return r
            raise TaskError("task.unknown", f"job {self.id} is gone without a result (expired, cancelled or purged)")
        if j["state"] == "dead":
            raise TaskError("task.failed", f"job {self.id} failed: {j.get('last_error') or j.get('dead_reason')}")
        return None

    def ready(self) -> bool:
        return self._stored() is not None

    def result(self, timeout: Optional[float] = None) -> R:
        """Wait up to ``timeout`` seconds (None: forever) for the return value.

        Raises:
            TaskError: the job went to the dead letters (``task.failed``) or vanished.
            TimeoutError: no result within ``timeout``.
        """
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        hub = self.db.hub
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = hub.epoch()
            r = self._check()
            if r is not None:
                return r.get("value")  # type: ignore[return-value]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no result for job {self.id} within {timeout}s")
            hub.wait(seen, left)

    get = result

    async def aresult(self, timeout: Optional[float] = None) -> R:
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        hub = self.db.hub
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = hub.epoch()
            r = self._check()
            if r is not None:
                return r.get("value")  # type: ignore[return-value]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no result for job {self.id} within {timeout}s")
            await hub.await_past(seen, left)

    def __await__(self) -> Generator[Any, None, R]:
        return self.aresult().__await__()


def dispatcher(db: Database, names: Optional[Iterable[str]] = None) -> Callable[[Job], Any]:
    """A handler that runs the task named in the job's payload (a job naming no known task fails)."""
    from .worker import Fail

    def handle(job: Job) -> Any:
        p = job.payload
        name = p.get("task") if isinstance(p, dict) else None
        t = db.tasks.get(name) if isinstance(name, str) else None
        if t is None:
            raise Fail(f"task.unknown: no task {name!r} is registered in this worker")
        if t.is_async:
            return asyncio.run(t.arun_job(job))
        return t.run_job(job)

    return handle


def async_dispatcher(db: Database) -> Callable[[Job], Any]:
    from .worker import Fail

    async def handle(job: Job) -> Any:
        p = job.payload
        name = p.get("task") if isinstance(p, dict) else None
        t = db.tasks.get(name) if isinstance(name, str) else None
        if t is None:
            raise Fail(f"task.unknown: no task {name!r} is registered in this worker")
        if t.is_async:
            return await t.arun_job(job)
        return await asyncio.get_running_loop().run_in_executor(None, t.run_job, job)

    return handle


__all__ = ["Task", "TaskResult", "dispatcher", "async_dispatcher", "HonkerError"]
