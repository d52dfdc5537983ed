"""Pub/sub: ``db.notify(channel, payload)``, ``for n in db.listen(channel)``, ``async for n in db.alisten(channel)``.

A listener owns one connection for its non-blocking reads (``honker_listen``) and sleeps on the
file's shared dispatcher (one thread per file per process, whatever the number of listeners).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Iterator, Optional

from ._json import loads

if TYPE_CHECKING:
    from ._db import Database


@dataclass(frozen=True)
class Notification:
    """One notification: its id (increasing per file), channel, JSON payload and creation time (ms)."""

    id: int
    channel: str
    payload: Any
    created_ms: int


class _Base:
    def __init__(self, db: Database, channel: str, *, after: Optional[int], timeout: Optional[float],
                 batch: int) -> None:
        self.db = db
        self.channel = channel
        self.timeout = timeout
        self.batch = batch
        self._buf: Deque[Notification] = deque()
        self._conn: Any = None
        self._closed = False
        self._after = after
        self._hub = db.hub
        self._open()  # "from now" means from the moment the listener was made

    def _open(self) -> Any:
        if self._conn is None:
            self._conn = self.db.connect()
            if self._after is None:
                row = self._conn.execute(
                    "SELECT coalesce(max(id), 0) FROM honker_notifications WHERE channel = ?",
                    (self.channel,)).fetchone()
                self._after = int(row[0])
        return self._conn

    @property
    def last_id(self) -> int:
        """The id of the last notification read (where a new listener would resume)."""
        return self._after or 0

    def _fill(self) -> bool:
        c = self._open()
        rows = loads(self.db._scalar(c, "SELECT honker_listen(?, ?, ?)", (self.channel, self._after, self.batch)))
        for r in rows:
            self._buf.append(Notification(r["id"], r["channel"], r["payload"], r["created_ms"]))
        if rows:
            self._after = rows[-1]["id"]
        return bool(rows)

    def close(self) -> None:
        """Stop the listener: a blocked iteration ends promptly."""
        self._closed = True
        self._hub.kick()
        c, self._conn = self._conn, None
        if c is not None:
            c.close()


class Listener(_Base):
    """A blocking iterator over notifications; ``close()`` (from any thread) ends it."""

    def __iter__(self) -> Iterator[Notification]:
        return self

    def __next__(self) -> Notification:
        n = self.get(self.timeout)
        if n is None:
            raise StopIteration
        return n

    def get(self, timeout: Optional[float] = None) -> Optional[Notification]:
        """The next notification, or None after ``timeout`` seconds (or once closed)."""
        if self._buf:
            return self._buf.popleft()
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        hub = self._hub
        while not self._closed:
            seen = hub.epoch()
            if self._fill():
                return self._buf.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            hub.wait(seen, left)
        return None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncListener(_Base):
    """``async for n in db.alisten(channel)``; cancelling the task stops it at once."""

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self

    async def __anext__(self) -> Notification:
        n = await self.get(self.timeout)
        if n is None:
            raise StopAsyncIteration
        return n

    async def get(self, timeout: Optional[float] = None) -> Optional[Notification]:
        """The next notification, or None after ``timeout`` seconds (or once closed)."""
        if self._buf:
            return self._buf.popleft()
        if timeout is None or timeout > 0:
            self.db._check_can_wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        hub = self._hub
        while not self._closed:
            seen = hub.epoch()
            if self._fill():  # a non-blocking indexed read: fine on the loop's thread
                return self._buf.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            await hub.await_past(seen, left)
        return None

    async def __aenter__(self) -> AsyncListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
