"""Durable streams: ``publish`` in the caller's transaction, per-consumer offsets, replay then live."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Dict, Iterator, List, Optional

from ._json import dumps, loads

if TYPE_CHECKING:
    from ._db import ConnLike, Database


@dataclass
class Event:
    """One stream event. ``commit(conn)`` records this offset for the subscription's consumer on
    ``conn`` (inside the caller's transaction: the event's effects and the offset commit together)."""

    offset: int
    topic: str
    key: Optional[str]
    payload: Any
    created_ms: int
    _sub: Optional[_SubBase] = field(default=None, repr=False, compare=False)

    def commit(self, conn: ConnLike = None) -> bool:
        if self._sub is None:
            raise ValueError("this event was not read through a subscription")
        return self._sub.commit(self.offset, conn=conn)


class Stream:
    """The stream ``topic`` of a database: get it with ``db.stream(topic)``."""

    def __init__(self, db: Database, topic: str) -> None:
        self.db = db
        self.topic = topic

    def __repr__(self) -> str:
        return f"<honker.Stream {self.topic!r}>"

    def publish(self, payload: Any, *, key: Optional[str] = None, conn: ConnLike = None) -> int:
        """Append an event (in the caller's transaction); returns its offset."""
        db = self.db
        c = db._conn(conn)
        if key is None:
            return int(db._write(c, "SELECT honker_publish(?, ?)", (self.topic, dumps(payload))))
        return int(db._write(c, "SELECT honker_publish(?, ?, ?)", (self.topic, dumps(payload), key)))

    def read(self, after: int = 0, limit: int = 100, *, conn: ConnLike = None) -> List[Event]:
        """Up to ``limit`` events after offset ``after``."""
        rows = loads(self.db._scalar(self.db._conn(conn), "SELECT honker_read(?, ?, ?)", (self.topic, after, limit)))
        return [Event(r["offset"], r["topic"], r["key"], r["payload"], r["created_ms"]) for r in rows]

    def offset(self, consumer: str) -> Optional[int]:
        """The committed offset of ``consumer``, or None."""
        v = self.db._scalar(self.db._conn(None), "SELECT honker_offset(?, ?)", (consumer, self.topic))
        return None if v is None else int(v)

    def commit(self, consumer: str, offset: int, *, conn: ConnLike = None) -> bool:
        """Advance ``consumer``'s offset (monotonic: a lower one is ignored); True if it moved."""
        return bool(self.db._write(self.db._conn(conn), "SELECT honker_commit_offset(?, ?, ?)",
                                   (consumer, self.topic, offset)))

    def consumers(self) -> List[Dict[str, Any]]:
        """Consumers of this topic with their offsets and lag."""
        return list(loads(self.db._scalar(self.db._conn(None), "SELECT honker_consumers(?)", (self.topic,))))

    def trim(self, *, max_age: Optional[float] = None, max_events: Optional[int] = None,
             through: Optional[int] = None, force: bool = False) -> int:
        """Delete old events (never past an uncommitted consumer unless ``force``); returns how many."""
        o: Dict[str, Any] = {}
        if max_age is not None:
            o["max_age_ms"] = int(max_age * 1000)
        if max_events is not None:
            o["max_events"] = max_events
        if through is not None:
            o["through"] = through
        if force:
            o["force"] = True
        return int(self.db._write(self.db._conn(None), "SELECT honker_stream_trim(?, ?)",
                                  (self.topic, json.dumps(o) if o else None)))

    def subscribe(self, consumer: str, *, auto_commit: bool = True, batch: int = 100,
                  timeout: Optional[float] = None) -> Subscription:
        """Iterate events from ``consumer``'s committed offset: replay, then live.

        With ``auto_commit`` each event's offset is committed when the next one is asked for (at
        least once). Without it call ``event.commit(conn)`` in the transaction that applies it.
        """
        return Subscription(self, consumer, auto_commit=auto_commit, batch=batch, timeout=timeout)

    def asubscribe(self, consumer: str, *, auto_commit: bool = True, batch: int = 100,
                   timeout: Optional[float] = None) -> AsyncSubscription:
        return AsyncSubscription(self, consumer, auto_commit=auto_commit, batch=batch, timeout=timeout)


class _SubBase:
    def __init__(self, stream: Stream, consumer: str, *, auto_commit: bool, batch: int,
                 timeout: Optional[float]) -> None:
        self.stream = stream
        self.consumer = consumer
        self.auto_commit = auto_commit
        self.batch = batch
        self.timeout = timeout
        self._conn: Any = None
        self._pos: Optional[int] = None
        self._buf: Deque[Event] = deque()
        self._pending: Optional[int] = None
        self._closed = False
        self._hub = stream.db.hub

    def _open(self) -> Any:
        if self._conn is None:
            db = self.stream.db
            self._conn = db.connect()
            v = db._scalar(self._conn, "SELECT honker_offset(?, ?)", (self.consumer, self.stream.topic))
            self._pos = 0 if v is None else int(v)
        return self._conn

    def commit(self, offset: int, conn: ConnLike = None) -> bool:
        db = self.stream.db
        c = db._conn(conn) if conn is not None else self._open()
        args = (self.consumer, self.stream.topic, offset)
        return bool(db._write(c, "SELECT honker_commit_offset(?, ?, ?)", args, False))

    def _fill(self) -> bool:
        c = self._open()
        db = self.stream.db
        rows = loads(db._scalar(c, "SELECT honker_read(?, ?, ?)", (self.stream.topic, self._pos, self.batch)))
        for r in rows:
            self._buf.append(Event(r["offset"], r["topic"], r["key"], r["payload"], r["created_ms"], self))
        if rows:
            self._pos = rows[-1]["offset"]
        return bool(rows)

    def _auto_commit(self) -> None:
        if self.auto_commit and self._pending is not None:
            self.commit(self._pending)
            self._pending = None

    def _take(self) -> Event:
        e = self._buf.popleft()
        if self.auto_commit:
            self._pending = e.offset
        return e

    def close(self) -> None:
        if self._conn is not None and not self._closed:
            try:
                self._auto_commit()
            finally:
                self._closed = True
                self._hub.kick()
                self._conn.close()
                self._conn = None
        self._closed = True


class Subscription(_SubBase):
    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        e = self.get(self.timeout)
        if e is None:
            raise StopIteration
        return e

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        self._auto_commit()
        if self._buf:
            return self._take()
        if timeout is None or timeout > 0:
            self.stream.db._check_can_wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        hub = self._hub
        while not self._closed:
            seen = hub.epoch()
            if self._fill():
                return self._take()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            hub.wait(seen, left)
        return None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscription(_SubBase):
    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        e = await self.get(self.timeout)
        if e is None:
            raise StopAsyncIteration
        return e

    async def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        self._auto_commit()
        if self._buf:
            return self._take()
        if timeout is None or timeout > 0:
            self.stream.db._check_can_wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        hub = self._hub
        while not self._closed:
            seen = hub.epoch()
            if self._fill():
                return self._take()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            await hub.await_past(seen, left)
        return None

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
