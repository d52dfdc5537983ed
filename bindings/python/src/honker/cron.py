"""Cron: ``@db.periodic(...)`` tasks, schedule management, and the ``Scheduler`` runner.

Firing is leaderless (``honker_cron_tick``): any number of schedulers may run; each boundary fires
once. The runner sleeps until the earliest next fire, or until a commit changes the schedules.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .errors import ArgumentError
from .queue import to_ms, when_ms

if TYPE_CHECKING:
    from ._db import ConnLike, Database
    from .tasks import Task

log = logging.getLogger("honker.scheduler")

_DURATIONS = {"grace": "grace_ms"}
_PLAIN = {"priority", "max_attempts", "misfire", "misfire_cap", "overlap", "max_runs", "grace_ms", "end_at_ms"}


def schedule_options(tz: Optional[str], options: Dict[str, Any]) -> Optional[str]:
    o: Dict[str, Any] = {}
    if tz is not None:
        o["tz"] = tz
    for k, v in options.items():
        if k in _DURATIONS:
            o[_DURATIONS[k]] = to_ms(v, k)
        elif k == "end_at":
            o["end_at_ms"] = when_ms(v, k)
        elif k in _PLAIN:
            o[k] = v
        else:
            raise ArgumentError("cron.bad_option", f"unknown schedule option {k!r}")
    return json.dumps(o) if o else None


def schedule(db: Database, name: str, cron: str, queue: str, payload: Any, *, tz: Optional[str],
             conn: ConnLike, **options: Any) -> Optional[int]:
    from ._json import dumps

    opts = schedule_options(tz, options)
    v = db._write(db._conn(conn), "SELECT honker_schedule(?, ?, ?, ?, ?)", (name, cron, queue, dumps(payload), opts))
    return None if v is None else int(v)


@dataclass
class Periodic:
    """A ``@db.periodic`` declaration: registered (upserted) when a scheduler starts."""

    task: Task[Any]
    cron: str
    name: str
    tz: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)

    def register(self, db: Database) -> Optional[int]:
        payload = {"task": self.task.name, "args": [], "kwargs": {}}
        return schedule(db, self.name, self.cron, self.task.queue, payload, tz=self.tz, conn=None, **self.options)


class Scheduler:
    """Fires due schedules until ``stop()`` or SIGTERM/SIGINT (when run in the main thread)."""

    def __init__(self, db: Database, *, max_sleep: float = 60.0) -> None:
        self.db = db
        self.max_sleep = max_sleep
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.fired: List[Dict[str, Any]] = []

    def register(self) -> None:
        """Upsert every ``@db.periodic`` schedule of the database."""
        for p in self.db._periodic.values():
            nxt = p.register(self.db)
            log.info("schedule %s (%s%s) -> queue %s, next fire %s", p.name, p.cron,
                     f" {p.tz}" if p.tz else "", p.task.queue, _fmt(nxt))

    def tick(self) -> List[Dict[str, Any]]:
        fires = self.db.tick()
        for f in fires:
            log.info("fired %s at %s -> job %s", f["schedule"], _fmt(f["fire_ms"]), f["job_id"])
        self.fired.extend(fires)
        return fires

    def next_fire_ms(self) -> Optional[int]:
        nxt: Optional[int] = None
        for s in self.db.schedules(0):
            t = s.get("next_fire_ms")
            if not s.get("paused") and t is not None and (nxt is None or t < nxt):
                nxt = int(t)
        return nxt

    def run(self, *, install_signal_handlers: bool = True) -> None:
        restore: Dict[signal.Signals, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Optional[FrameType]) -> None:
                log.info("scheduler: %s: stopping", signal.Signals(signum).name)
                self.stop(wait=False)

            for sig in (signal.SIGTERM, signal.SIGINT):
                restore[sig] = signal.signal(sig, on_signal)
        hub = self.db.hub
        try:
            self.register()
            while not self._stopping:
                seen = hub.epoch()
                self.tick()
                nxt = self.next_fire_ms()
                sleep = self.max_sleep if nxt is None else min(max(nxt / 1000 - time.time(), 0.001), self.max_sleep)
                hub.wait(seen, sleep)
        finally:
            for sig, h in restore.items():
                signal.signal(sig, h)
            log.info("scheduler: stopped after %d fires", len(self.fired))

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self.run, kwargs={"install_signal_handlers": False},
                                        name="honker-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, wait: bool = True) -> None:
        self._stopping = True
        self.db.hub.kick()
        t = self._thread
        if wait and t is not None and t is not threading.current_thread():
            t.join()


def _fmt(ms: Optional[int]) -> str:
    if ms is None:
        return "never"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat(timespec="milliseconds")
