import asyncio
import signal
import threading
import time
from typing import Any, List

import pytest

import honker
from conftest import child, wait_until


def test_thread_worker_runs_jobs_concurrently_and_stores_results(db: honker.Database) -> None:
    q = db.queue("w")
    ids = q.enqueue_many(list(range(20)))
    running = set()
    peak = [0]
    lock = threading.Lock()

    def handler(job: honker.Job) -> Any:
        with lock:
            running.add(job.id)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.02)
        with lock:
            running.discard(job.id)
        return job.payload * 2

    with q.worker(handler, concurrency=4):
        wait_until(lambda: all(q.result(i) is not None for i in ids), what="all results")
    assert [q.result(i) for i in ids] == [i * 2 for i in range(20)]
    assert peak[0] > 1
    assert q.stats().pending == 0 and q.stats().running == 0


def test_retry_exception_sets_the_delay_and_other_errors_use_backoff(db: honker.Database) -> None:
    q = db.queue("r", max_attempts=3, backoff_base=0)
    jid = q.enqueue("x")
    attempts: List[int] = []

    def handler(job: honker.Job) -> None:
        attempts.append(job.attempts)
        if job.attempts == 1:
            raise honker.Retry(delay=0.05, error="not yet")
        if job.attempts == 2:
            raise ValueError("flaky")

    with q.worker(handler):
        wait_until(lambda: q.job(jid) is None, what="job done")
    assert attempts == [1, 2, 3]


def test_exhausted_attempts_go_to_dead_letters_and_fail_goes_at_once(db: honker.Database) -> None:
    q = db.queue("d", max_attempts=2, backoff_base=0)
    a = q.enqueue("always fails")
    b = q.enqueue("fatal")

    def handler(job: honker.Job) -> None:
        if job.payload == "fatal":
            raise honker.Fail("no point retrying")
        raise RuntimeError("boom")

    with q.worker(handler):
        wait_until(lambda: q.stats().dead == 2, what="two dead letters")
    dead = {d["id"]: d for d in q.dead()}
    assert dead[a]["attempts"] == 2 and "RuntimeError: boom" in dead[a]["last_error"]
    assert dead[b]["attempts"] == 1 and "no point retrying" in dead[b]["last_error"]


def test_sync_handler_past_its_timeout_is_interrupted_and_retried(db: honker.Database) -> None:
    q = db.queue("t", backoff_base=0)
    jid = q.enqueue("slow")
    runs: List[int] = []
    interrupted = threading.Event()

    def handler(job: honker.Job) -> str:
        runs.append(job.attempts)
        if job.attempts == 1:
            try:
                while True:  # pure Python: the async exception lands here
                    time.sleep(0.001)
            except BaseException:
                interrupted.set()
                raise
        return "second try"

    with q.worker(handler, timeout=0.3, concurrency=1):
        wait_until(lambda: q.result(jid) is not None, what="the retried job")
    assert runs == [1, 2]
    assert interrupted.is_set()
    assert q.result(jid) == "second try"


def test_heartbeats_keep_a_long_job_from_being_reclaimed(db: honker.Database, path: str) -> None:
    q = db.queue("hb", lease=0.3)
    jid = q.enqueue("long")
    other = honker.open(path)
    stolen: List[Any] = []
    done = threading.Event()

    def handler(job: honker.Job) -> None:
        end = time.monotonic() + 1.5  # five leases long
        while time.monotonic() < end:
            stolen.extend(other.queue("hb").claim())
            time.sleep(0.05)
        done.set()

    with q.worker(handler):
        wait_until(done.is_set, what="handler")
        wait_until(lambda: q.job(jid) is None, what="ack")
    assert stolen == []
    other.close()


def test_graceful_stop_releases_held_jobs_without_using_an_attempt(db: honker.Database) -> None:
    q = db.queue("g")
    jid = q.enqueue("stuck")
    started = threading.Event()

    def handler(job: honker.Job) -> None:
        started.set()
        while True:
            time.sleep(0.001)

    w = q.worker(handler, shutdown_timeout=0.2).start()
    assert started.wait(20)
    w.stop()
    info = q.job(jid)
    assert info is not None and info["state"] == "pending" and info["attempts"] == 0


def test_transactional_handler_commits_effect_and_ack_together(db: honker.Database) -> None:
    db.execute("CREATE TABLE effects (job INTEGER, v TEXT)")
    q = db.queue("tx", max_attempts=2, backoff_base=0)
    ok = q.enqueue("ok")
    bad = q.enqueue("bad")

    def handler(job: honker.Job) -> None:
        job.conn.execute("INSERT INTO effects VALUES (?, ?)", (job.id, job.payload))
        if job.payload == "bad":
            raise RuntimeError("after the effect")

    with q.worker(handler, transactional=True):
        wait_until(lambda: q.job(ok) is None and q.stats().dead == 1, what="both jobs settled")
    assert db.execute("SELECT job FROM effects").fetchall() == [(ok,)]
    assert q.dead()[0]["id"] == bad


def test_worker_process_stops_on_sigterm_and_releases_its_job(path: str) -> None:
    db = honker.open(path)
    q = db.queue("sig")
    jid = q.enqueue("block")
    p = child("block_worker.py", path)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "started"
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0
    err = p.stderr.read() if p.stderr else ""
    assert "released job" in err, err
    info = q.job(jid)
    assert info is not None and info["state"] == "pending" and info["attempts"] == 0
    db.close()


async def test_async_worker_runs_coroutines_and_sync_handlers(db: honker.Database) -> None:
    q = db.queue("aw")
    ids = q.enqueue_many(list(range(10)))

    async def handler(job: honker.Job) -> int:
        await asyncio.sleep(0.01)
        return int(job.payload) + 100

    w = q.aworker(handler, concurrency=5)
    task = asyncio.create_task(w.run())
    for _ in range(2000):
        if all(q.result(i) is not None for i in ids):
            break
        await asyncio.sleep(0.01)
    w.stop()
    await asyncio.wait_for(task, 30)
    assert [q.result(i) for i in ids] == [i + 100 for i in range(10)]


async def test_async_worker_timeout_retries_the_job(db: honker.Database) -> None:
    q = db.queue("at", backoff_base=0)
    jid = q.enqueue(1)

    async def handler(job: honker.Job) -> str:
        if job.attempts == 1:
            await asyncio.sleep(3600)
        return "ok"

    w = q.aworker(handler, timeout=0.2)
    task = asyncio.create_task(w.run())
    for _ in range(3000):
        if q.result(jid) is not None:
            break
        await asyncio.sleep(0.01)
    w.stop()
    await asyncio.wait_for(task, 30)
    assert q.result(jid) == "ok"


async def test_cancelling_a_blocked_async_worker_is_prompt_and_releases_jobs(db: honker.Database) -> None:
    q = db.queue("ac")
    jid = q.enqueue("held")
    started = asyncio.Event()

    async def handler(job: honker.Job) -> None:
        started.set()
        await asyncio.sleep(3600)

    idle = q.aworker(handler)  # an idle worker on another queue blocks in the wait
    other = db.queue("empty").aworker(handler)
    t1 = asyncio.create_task(idle.run())
    t2 = asyncio.create_task(other.run())
    await asyncio.wait_for(started.wait(), 20)
    while db.hub._waiters < 2:
        await asyncio.sleep(0.005)
    t1.cancel()
    t2.cancel()
    done, pending = await asyncio.wait([t1, t2], timeout=10)
    assert not pending
    info = q.job(jid)
    assert info is not None and info["state"] == "pending" and info["attempts"] == 0
