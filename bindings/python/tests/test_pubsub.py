import asyncio
import threading
import time

import pytest

import honker
from conftest import child, wait_until


def test_listen_gets_notifications_from_another_thread(db: honker.Database) -> None:
    got = []
    listener = db.listen("orders", timeout=30)

    def consume() -> None:
        for n in listener:
            got.append(n.payload)
            if len(got) == 3:
                break

    t = threading.Thread(target=consume)
    t.start()
    for i in range(3):
        db.notify("orders", {"i": i})
    t.join(30)
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
    listener.close()


def test_listener_starts_from_now_or_after_an_id(db: honker.Database) -> None:
    first = db.notify("c", "old")
    live = db.listen("c", timeout=0.2)
    db.notify("c", "new")
    assert [n.payload for n in live] == ["new"]
    replay = db.listen("c", after=first - 1, timeout=0.2)
    assert [n.payload for n in replay] == ["old", "new"]


def test_notification_in_a_rolled_back_transaction_is_never_delivered(db: honker.Database) -> None:
    listener = db.listen("c", timeout=0.3)
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.notify("c", "ghost")
            raise RuntimeError
    db.notify("c", "real")
    assert [n.payload for n in listener] == ["real"]


def test_many_listeners_share_one_waiting_thread_per_file(db: honker.Database, path: str) -> None:
    other = honker.open(path)  # a second handle on the same file shares the hub too
    listeners = [db.listen("c", timeout=30) for _ in range(10)] + [other.listen("c", timeout=30)]
    results: list = []
    threads = [threading.Thread(target=lambda l=l: results.append(l.get(30))) for l in listeners]
    for t in threads:
        t.start()
    wait_until(lambda: db.hub._waiters == len(listeners), what="all listeners waiting")
    hubs = [t for t in threading.enumerate() if t.name.startswith("honker-hub")]
    assert len(hubs) == 1
    assert other.hub is db.hub
    db.notify("c", 1)
    for t in threads:
        t.join(30)
    assert [r.payload for r in results] == [1] * len(listeners)
    other.close()


def test_cross_process_notify_wakes_a_listener(db: honker.Database, path: str) -> None:
    listener = db.listen("x", timeout=30)
    p = child("notify.py", path, "x", "3")
    got = [listener.get(30) for _ in range(3)]
    assert p.wait(30) == 0, p.stderr.read() if p.stderr else ""
    assert [n.payload for n in got if n] == [0, 1, 2]


def test_close_ends_a_blocked_listener_promptly(db: honker.Database) -> None:
    listener = db.listen("c")
    out: list = []
    t = threading.Thread(target=lambda: out.append(list(listener)))
    t.start()
    wait_until(lambda: db.hub._waiters >= 1, what="the listener to block")
    listener.close()
    t.join(10)
    assert not t.is_alive() and out == [[]]


async def test_alisten_gets_notifications(db: honker.Database) -> None:
    got = []

    async def consume() -> None:
        async for n in db.alisten("a", timeout=30):
            got.append(n.payload)
            if len(got) == 2:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    db.notify("a", "one")
    await asyncio.to_thread(db.notify, "a", "two")  # from another thread's connection
    await asyncio.wait_for(task, 30)
    assert got == ["one", "two"]


async def test_cancelling_a_blocked_async_listener_is_prompt_and_leaves_the_loop_free(db: honker.Database) -> None:
    listener = db.alisten("never")
    task = asyncio.create_task(listener.get())
    ticks = 0
    while db.hub._waiters < 1:  # the loop keeps running while the listener waits
        ticks += 1
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert db.hub._waiters == 0
    listener.close()


def test_hub_thread_stops_when_the_last_database_closes(path: str) -> None:
    db = honker.open(path)
    listener = db.listen("c")
    t = threading.Thread(target=lambda: listener.get(1.0))
    t.start()
    wait_until(lambda: db.hub._waiters >= 1, what="waiter")
    hub = db.hub
    t.join(10)
    listener.close()
    time.sleep(0)  # the dispatcher may be inside honker_wait now; close must still stop it promptly
    db.close()
    assert not hub.alive
    if hub.cancellable:
        # With the extension's cancel keys the dispatcher's blocked wait was stopped, not waited out.
        assert hub.cancels == 1
