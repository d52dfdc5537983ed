"""``HonkerBackend``: Django's task backend over a honker queue in the Django database's own file."""

from __future__ import annotations

import datetime as _dt
import time
import traceback
from typing import Any, Dict, List, Optional

from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django_tasks.exceptions import TaskResultDoesNotExist

import honker
from honker._db import Database


def database_for(connection: Any) -> Database:
    """The honker ``Database`` bound to a Django connection (the extension loaded once per connection)."""
    connection.ensure_connection()
    raw = connection.connection
    db: Optional[Database] = getattr(connection, "_honker_db", None)
    if db is None or db._attached is not raw:
        db = honker.attach(raw, setup=not raw.in_transaction)
        connection._honker_db = db
    return db


def _ms(d: Optional[_dt.datetime]) -> Optional[int]:
    return None if d is None else int(d.timestamp() * 1000)


def _dt_of(ms: Optional[int]) -> Optional[_dt.datetime]:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)


class HonkerBackend(BaseTaskBackend):
    """``TASKS = {"default": {"BACKEND": "honker.contrib.django.HonkerBackend",
    "OPTIONS": {"database": "default"}}}``: jobs live in that database's SQLite file."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: Dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database = str(self.options.get("database", "default"))

    def _db(self) -> Database:
        return database_for(connections[self.database])

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        db = self._db()
        payload = {"task": task.module_path, "args": list(args), "kwargs": dict(kwargs),
                   "takes_context": task.takes_context}
        job_id = db.queue(task.queue_name).enqueue(
            payload, priority=task.priority, run_at=task.run_after)
        return TaskResult(task=task, id=str(job_id), status=TaskResultStatus.READY,
                          enqueued_at=timezone.now(), started_at=None, last_attempted_at=None,
                          finished_at=None, args=list(args), kwargs=dict(kwargs), backend=self.alias,
                          errors=[], worker_ids=[])

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job_id = int(result_id)
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        db = self._db()
        stored = db.queue("default").result(job_id)
        if isinstance(stored, dict) and "django_task" in stored:
            s = stored
            task = import_string(s["django_task"])
            r = TaskResult(task=task, id=result_id, status=TaskResultStatus.SUCCESSFUL,
                           enqueued_at=_dt_of(s.get("enqueued_ms")), started_at=_dt_of(s.get("started_ms")),
                           last_attempted_at=_dt_of(s.get("started_ms")), finished_at=_dt_of(s.get("finished_ms")),
                           args=s.get("args", []), kwargs=s.get("kwargs", {}), backend=self.alias, errors=[],
                           worker_ids=s.get("worker_ids", []))
            object.__setattr__(r, "_return_value", s.get("value"))
            return r
        info = db.queue("default").job(job_id)
        if info is None or not isinstance(info.get("payload"), dict) or "task" not in info["payload"]:
            raise TaskResultDoesNotExist(result_id)
        p = info["payload"]
        status = {"pending": TaskResultStatus.READY, "scheduled": TaskResultStatus.READY,
                  "running": TaskResultStatus.RUNNING, "dead": TaskResultStatus.FAILED}.get(
            str(info["state"]), TaskResultStatus.READY)
        errors: List[TaskError] = []
        if status == TaskResultStatus.FAILED:
            err = str(info.get("last_error") or "")
            cls, _, _ = err.partition(":")
            errors.append(TaskError(exception_class_path=cls if "." in cls else f"builtins.{cls or 'Exception'}",
                                    traceback=err))
        return TaskResult(task=import_string(p["task"]), id=result_id, status=status,
                          enqueued_at=_dt_of(info.get("created_ms")), started_at=None, last_attempted_at=None,
                          finished_at=None, args=p.get("args", []), kwargs=p.get("kwargs", {}), backend=self.alias,
                          errors=errors, worker_ids=[info["worker"]] if info.get("worker") else [])


def run_job(job: honker.Job, worker_id: str) -> Dict[str, Any]:
    """The worker's handler: run the Django task named in the payload; its return value is stored."""
    p = job.payload
    task = import_string(p["task"])
    started = int(time.time() * 1000)
    args, kwargs = p.get("args", []), p.get("kwargs", {})
    if p.get("takes_context"):
        tr = TaskResult(task=task, id=str(job.id), status=TaskResultStatus.RUNNING, enqueued_at=None,
                        started_at=timezone.now(), last_attempted_at=timezone.now(), finished_at=None,
                        args=args, kwargs=kwargs, backend=task.backend, errors=[],
                        worker_ids=[worker_id] * job.attempts)
        value = task.call(TaskContext(task_result=tr), *args, **kwargs)
    else:
        value = task.call(*args, **kwargs)
    return {"django_task": p["task"], "value": value, "args": args, "kwargs": kwargs,
            "started_ms": started, "finished_ms": int(time.time() * 1000), "worker_ids": [worker_id]}


def describe(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__qualname__}: {e}\n{''.join(traceback.format_exception(e))[-1500:]}"


__all__ = ["HonkerBackend", "database_for", "run_job"]
