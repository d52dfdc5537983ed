"""Named locks with fencing tokens: ``with db.lock("report", ttl=30) as lock: ... lock.token``."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Optional, Type

from .errors import HonkerError

if TYPE_CHECKING:
    from ._db import Database


class LockNotAcquired(HonkerError):
    """The lock is held by another owner (``lock.busy``)."""


class Lock:
    """A named lock held for ``ttl`` seconds. ``token`` increases with every acquisition, so a
    resource can refuse writes carrying an older token (fencing)."""

    def __init__(self, db: Database, name: str, ttl: float = 30.0, *, owner: Optional[str] = None,
                 blocking: bool = True, timeout: Optional[float] = None) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.blocking = blocking
        self.timeout = timeout
        self.token: Optional[int] = None

    def try_acquire(self) -> bool:
        db = self.db
        args = (self.name, self.owner, self._ttl_ms())
        # No kick: taking a lock frees nothing anybody waits for (a kick would wake a contender
        # into another try, whose kick would wake us, and so on).
        v = db._write(db._conn(None), "SELECT honker_lock_acquire(?, ?, ?)", args, False)
        self.token = None if v is None else int(v)
        return self.token is not None

    def acquire(self) -> int:
        """Take the lock (waiting for a release or expiry when ``blocking``); returns the token.

        Raises:
            LockNotAcquired: not blocking and held, or not free within ``timeout``.
        """
        if self.blocking:
            self.db._check_can_wait()
        hub = self.db.hub
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            seen = hub.epoch()
            if self.try_acquire():
                assert self.token is not None
                return self.token
            left = None if deadline is None else deadline - time.monotonic()
            if not self.blocking or (left is not None and left <= 0):
                raise LockNotAcquired("lock.busy", f"lock {self.name!r} is held by another owner")
            # A release is a commit (wakes us); an expiry is not: look again at least every ttl/4.
            step = max(min(self.ttl / 4, 1.0), 0.01)
            hub.wait(seen, step if left is None else min(step, left))

    def renew(self, ttl: Optional[float] = None) -> bool:
        """Extend the lock to ``ttl`` (default the lock's) from now; False if it was lost."""
        if self.token is None:
            return False
        if ttl is not None:
            self.ttl = ttl
        db = self.db
        args = (self.name, self.token, self._ttl_ms())
        return bool(db._write(db._conn(None), "SELECT honker_lock_renew(?, ?, ?)", args, False))

    def release(self) -> bool:
        if self.token is None:
            return False
        db = self.db
        ok = bool(db._write(db._conn(None), "SELECT honker_lock_release(?, ?)", (self.name, self.token)))
        self.token = None
        return ok

    def _ttl_ms(self) -> int:
        return int(round(self.ttl * 1000))

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()
