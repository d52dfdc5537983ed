"""One waiting thread per database file per process, shared by every subscriber of that process.

The dispatcher thread owns one connection and blocks in ``honker_wait(epoch, timeout[, cancel_key])``
(the GIL is released while it blocks). Each time the extension's epoch moves it bumps a local epoch
and wakes every waiter: threads through a ``Condition``, asyncio tasks through futures resolved with
``call_soon_threadsafe``. Subscribers then do their own non-blocking read (``honker_listen``,
``honker_claim``, ...). They follow DESIGN §2: sample ``epoch()`` before they look, and wait only
past the sample, so a commit that lands while they look is never slept through.

When nobody waits, the dispatcher parks (and with it the extension's watcher). Closing the last
database of a file stops the thread: with the extension's cancel keys at once
(``honker_wait_cancel``), otherwise within one bounded wait of 200 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Optional, Set, Tuple

from . import _driver
from .errors import HonkerError, WaitCancelled, map_error

log = logging.getLogger("honker")

_FALLBACK_WAIT_MS = 200
_CANCELLABLE_WAIT_MS = 5_000
_counter = itertools.count(1)


class Hub:
    """The local epoch of one database file and the thread that advances it."""

    def __init__(self, path: str, key: Tuple[int, int, int], connect: Callable[[], Any],
                 drv: _driver.Driver) -> None:
        self.path = path
        self.key = key
        self._connect = connect
        self._driver = drv
        # Reentrant: a signal handler (a worker's SIGTERM) may kick while its thread holds it.
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # The dispatcher parks on its own condition (same lock), so a kick with nobody waiting
        # wakes no thread at all: the common case of a write in a process with idle listeners.
        self._park = threading.Condition(lock)
        self._epoch = 0
        self._waiters = 0
        self._futures: Set[Tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._refs = 0
        self._closed = False
        self._wait_key: Optional[str] = None
        self.cancellable = drv.has("honker_wait_cancel") and drv.has("honker_wait", 3)
        self.cancels = 0  # waits stopped through honker_wait_cancel (for tests and diagnostics)
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=f"honker-hub {os.path.basename(path)}",
                                        daemon=True)
        self._thread.start()

    # --- what subscribers call ---------------------------------------------------------------

    def epoch(self) -> int:
        """The local epoch; sample it before looking for work."""
        return self._epoch

    def kick(self) -> None:
        """Advance the local epoch now (a same-process writer that just committed)."""
        with self._cond:
            self._bump_locked()

    def wait(self, seen: int, timeout: Optional[float]) -> bool:
        """Block the calling thread until the epoch is past ``seen`` or ``timeout`` seconds passed.

        Returns whether the epoch moved.
        """
        with self._cond:
            if self._epoch > seen or self._closed:
                return self._epoch > seen
            self._waiters += 1
            if self._waiters == 1:
                self._park.notify()  # unpark the dispatcher
            try:
                return self._cond.wait_for(lambda: self._epoch > seen or self._closed, timeout)
            finally:
                self._waiters -= 1

    async def await_past(self, seen: int, timeout: Optional[float]) -> bool:
        """The asyncio twin of :meth:`wait`: never blocks the event loop, and is cancelled at once."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        item = (loop, fut)
        with self._cond:
            if self._epoch > seen or self._closed:
                return self._epoch > seen
            self._futures.add(item)
            self._waiters += 1
            if self._waiters == 1:
                self._park.notify()
        # No asyncio.wait_for: before Python 3.12 it can swallow a cancellation that arrives as
        # the future completes, and a cancelled worker would then wait forever.
        timer = None if timeout is None else loop.call_later(max(timeout, 0.0), _resolve, fut)
        try:
            await fut
            return self._epoch > seen
        finally:
            if timer is not None:
                timer.cancel()
            with self._cond:
                self._futures.discard(item)
                self._waiters -= 1

    # --- lifetime ----------------------------------------------------------------------------

    def acquire(self) -> None:
        with self._cond:
            self._refs += 1

    def release(self) -> bool:
        """Drop one reference; the last one stops the thread. Returns whether it stopped."""
        with self._cond:
            self._refs -= 1
            if self._refs > 0:
                return False
            self._closed = True
            self._bump_locked()
            self._park.notify_all()
            key = self._wait_key
        if key is not None and self.cancellable:
            self._cancel(key)
        self._thread.join(timeout=5)
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the dispatcher ----------------------------------------------------------------------

    def _bump_locked(self) -> None:
        self._epoch += 1
        if not self._waiters:
            return
        self._cond.notify_all()
        for loop, fut in list(self._futures):
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed
                self._futures.discard((loop, fut))

    def _cancel(self, key: str) -> None:
        try:
            conn = self._connect()
            try:
                n = conn.execute("SELECT honker_wait_cancel(?)", (key,)).fetchone()[0]
                self.cancels += int(n or 0)
            finally:
                conn.close()
        except Exception as e:  # the thread still stops within its wait's timeout
            log.debug("honker: cancelling the hub's wait failed: %s", e)

    def _run(self) -> None:
        conn: Any = None
        ext_epoch = 0
        failures = 0
        while True:
            with self._cond:
                while self._waiters == 0 and not self._closed:
                    self._park.wait()
                if self._closed:
                    break
            try:
                if conn is None:
                    conn = self._connect()
                    ext_epoch = int(conn.execute("SELECT honker_epoch()").fetchone()[0])
                    # A commit just before the watcher took its baseline is no advance of its
                    # epoch: wake everyone once so nobody sleeps through it.
                    self.kick()
                if self.cancellable:
                    key = f"py-{os.getpid()}-{id(self):x}-{next(_counter)}"
                    with self._cond:
                        if self._closed:
                            break
                        self._wait_key = key
                    now = int(conn.execute("SELECT honker_wait(?, ?, ?)",
                                           (ext_epoch, _CANCELLABLE_WAIT_MS, key)).fetchone()[0])
                else:
                    now = int(conn.execute("SELECT honker_wait(?, ?)",
                                           (ext_epoch, _FALLBACK_WAIT_MS)).fetchone()[0])
                failures = 0
                self.error = None
                if now != ext_epoch:
                    ext_epoch = now
                    self.kick()
            except Exception as e:
                mapped = map_error(e) or e
                if isinstance(mapped, WaitCancelled):
                    continue
                failures += 1
                self.error = mapped
                log.warning("honker: wake dispatcher for %s: %s (retrying)", self.path, mapped)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = None
                self.kick()  # conservative: waiters re-check, then wait again
                time.sleep(min(0.05 * failures, 1.0))
            finally:
                self._wait_key = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_hubs: Dict[Tuple[int, int, int], Hub] = {}
_hubs_lock = threading.Lock()


def hub_for(path: str, connect: Callable[[], Any], drv: _driver.Driver) -> Hub:
    """The process's hub of the file at ``path`` (one per device, inode and pid), with one more reference."""
    st = os.stat(path)
    key = (os.getpid(), st.st_dev, st.st_ino)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None or hub._closed:
            hub = Hub(path, key, connect, drv)
            _hubs[key] = hub
        hub.acquire()
    return hub


def release(hub: Hub) -> None:
    with _hubs_lock:
        stopped = hub.release()
        if stopped and _hubs.get(hub.key) is hub:
            del _hubs[hub.key]


__all__ = ["Hub", "hub_for", "release", "HonkerError"]
