import asyncio
import datetime as dt
import threading

import pytest

import honker
from conftest import wait_until


def test_publish_read_and_subscribe_replays_then_goes_live(db: honker.Database) -> None:
    s = db.stream("orders")
    offs = [s.publish({"i": i}, key=f"k{i}") for i in range(3)]
    assert offs == sorted(offs)
    assert [e.payload for e in s.read()] == [{"i": 0}, {"i": 1}, {"i": 2}]
    sub = s.subscribe("billing", timeout=30)
    got = [next(sub).payload for _ in range(3)]
    t = threading.Timer(0.05, lambda: s.publish({"i": 3}))
    t.start()
    got.append(next(sub).payload)
    t.join()
    assert got == [{"i": i} for i in range(4)]
    sub.close()  # auto-commit: the last event's offset is committed
    assert s.offset("billing") == s.read(after=offs[-1])[0].offset
    again = s.subscribe("billing", timeout=0.1)
    assert list(again) == []


def test_manual_offset_commit_rides_the_callers_transaction(db: honker.Database) -> None:
    db.execute("CREATE TABLE totals (n INTEGER)")
    s = db.stream("t")
    for i in range(3):
        s.publish(i)
    sub = s.subscribe("c", auto_commit=False, timeout=0.2)
    e0 = next(sub)
    with db.transaction() as tx:
        tx.execute("INSERT INTO totals VALUES (?)", (e0.payload,))
        e0.commit(tx)
    e1 = next(sub)
    with pytest.raises(ZeroDivisionError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO totals VALUES (?)", (e1.payload,))
            e1.commit(tx)
            1 / 0
    assert s.offset("c") == e0.offset
    assert db.execute("SELECT n FROM totals").fetchall() == [(0,)]
    sub.close()
    resumed = s.subscribe("c", auto_commit=False, timeout=0.2)
    assert [e.payload for e in resumed] == [1, 2]
    assert s.consumers()[0]["consumer"] == "c"


async def test_async_subscribe(db: honker.Database) -> None:
    s = db.stream("as")
    s.publish("a")
    got = []

    async def consume() -> None:
        async for e in s.asubscribe("x", timeout=30):
            got.append(e.payload)
            if len(got) == 2:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await asyncio.to_thread(s.publish, "b")
    await asyncio.wait_for(task, 30)
    assert got == ["a", "b"]


def test_trim(db: honker.Database) -> None:
    s = db.stream("trim")
    offs = [s.publish(i) for i in range(5)]
    assert s.trim(through=offs[1], force=True) == 2
    with pytest.raises(honker.Trimmed):
        s.read(after=0)


def test_schedule_management_and_tick(db: honker.Database) -> None:
    nxt = db.schedule("nightly", "0 3 * * *", "reports", {"kind": "daily"}, tz="Europe/Berlin", misfire="skip")
    assert nxt is not None
    [s] = db.schedules()
    assert (s["name"], s["tz"], s["queue"], s["payload"]) == ("nightly", "Europe/Berlin", "reports", {"kind": "daily"})
    fire = dt.datetime.fromtimestamp(nxt / 1000, dt.timezone.utc).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (fire.hour, fire.minute) == (3, 0)
    fired = db.tick(now_ms=nxt + 1)
    assert [f["schedule"] for f in fired] == ["nightly"]
    assert db.tick(now_ms=nxt + 1) == []  # a boundary fires once
    assert db.queue("reports").claim()[0].payload == {"kind": "daily"}
    db.pause_schedule("nightly")
    assert db.schedules()[0]["paused"]
    db.resume_schedule("nightly")
    assert db.unschedule("nightly") and db.schedules() == []


def test_scheduler_runner_fires_periodic_tasks(db: honker.Database) -> None:
    @db.periodic("@every 100ms", queue="beat")
    def beat() -> str:
        return "b"

    sch = db.scheduler().start()
    try:
        wait_until(lambda: len(sch.fired) >= 3, what="three fires")
    finally:
        sch.stop()
    fire_times = [f["fire_ms"] for f in sch.fired]
    assert fire_times == sorted(set(fire_times))
    assert db.queue("beat").stats().pending >= 3


def test_lock_fencing_tokens_and_contention(db: honker.Database, path: str) -> None:
    other = honker.open(path)
    with db.lock("report", ttl=30) as a:
        t1 = a.token
        assert t1 is not None
        with pytest.raises(honker.LockNotAcquired):
            other.lock("report", blocking=False).acquire()
        assert a.renew(60)
    with other.lock("report") as b:
        assert b.token is not None and b.token > t1
    got = []
    holder = db.lock("busy", ttl=30)
    holder.acquire()
    t = threading.Thread(target=lambda: got.append(other.lock("busy", timeout=30).acquire()))
    t.start()
    wait_until(lambda: other.hub._waiters >= 1, what="the second owner to wait")
    assert got == []
    holder.release()  # a release is a commit: the waiter wakes
    t.join(30)
    assert got and got[0] > 0
    other.close()


def test_rate_limit(db: honker.Database) -> None:
    results = [db.rate_limit("api", 3, per=60) for _ in range(5)]
    assert results == [True, True, True, False, False]
