import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import honker
from conftest import HERE, child_env, wait_until


def test_task_delay_returns_a_handle_whose_result_waits(db: honker.Database) -> None:
    @db.task(queue="t")
    def mul(a: int, b: int = 1) -> int:
        return a * b

    assert mul(2, b=3) == 6  # calling runs it here
    h = mul.delay(6, b=7)
    assert h.status() == "pending"
    with db.worker(concurrency=2):
        assert h.result(timeout=30) == 42
    assert h.status() == "done"
    assert mul.enqueue(1).id > h.id


def test_task_enqueued_in_a_rolled_back_transaction_never_runs(db: honker.Database) -> None:
    ran = []

    @db.task(queue="t")
    def record(x: str) -> None:
        ran.append(x)

    with pytest.raises(RuntimeError):
        with db.transaction():
            record.delay("ghost")
            raise RuntimeError
    h = record.apply_async(("real",), delay=0.01, priority=5)
    with db.worker():
        h.result(timeout=30)
    assert ran == ["real"]


def test_failed_task_raises_task_error_from_result(db: honker.Database) -> None:
    @db.task(queue="t", max_attempts=1)
    def bad() -> None:
        raise ValueError("nope")

    h = bad.delay()
    with db.worker():
        with pytest.raises(honker.TaskError) as e:
            h.result(timeout=30)
    assert e.value.code == "task.failed" and "nope" in str(e.value)


def test_result_timeout(db: honker.Database) -> None:
    @db.task(queue="nobody")
    def f() -> None: ...

    with pytest.raises(TimeoutError):
        f.delay().result(timeout=0.1)


def test_task_timeout_applies_to_sync_handlers(db: honker.Database) -> None:
    import time

    @db.task(queue="t", timeout=0.2, max_attempts=1)
    def spin() -> None:
        while True:
            time.sleep(0.001)

    h = spin.delay()
    with db.worker():
        with pytest.raises(honker.TaskError) as e:
            h.result(timeout=30)
    assert "worker.timeout" in str(e.value)


async def test_async_tasks_and_awaiting_a_result(db: honker.Database) -> None:
    @db.task(queue="a")
    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    @db.task(queue="a")
    def sync_add(a: int, b: int) -> int:
        return a + b

    handles = [slow_add.delay(1, 2), sync_add.delay(3, 4)]
    w = db.aworker(concurrency=4)
    task = asyncio.create_task(w.run())
    assert [await asyncio.wait_for(h, 30) for h in handles] == [3, 7]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_map_enqueues_many_calls(db: honker.Database) -> None:
    @db.task(queue="m")
    def sq(x: int) -> int:
        return x * x

    hs = sq.map([(i,) for i in range(10)])
    with db.worker(concurrency=3):
        assert [h.result(timeout=30) for h in hs] == [i * i for i in range(10)]


def _cli(path: str, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, "-m", "honker", *args], env=child_env(HONKER_TEST_DB=path), cwd=str(HERE),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_worker_runs_tasks_logs_each_job_and_stops_on_sigterm(path: str) -> None:
    os.environ["HONKER_TEST_DB"] = path
    from apps import tasks_app

    db = honker.open(path)
    h = tasks_app.add.apply_async((2, 3), conn=db)
    bad = tasks_app.explode.apply_async(conn=db)
    h.db = bad.db = db
    p = _cli(path, "worker", "apps.tasks_app:db", "--queue", "math", "--concurrency", "2")
    try:
        assert h.result(timeout=60) == 5
        with pytest.raises(honker.TaskError):
            bad.result(timeout=60)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert f"job {h.id} math done" in err
    assert f"job {bad.id} math error" in err
    assert "stopped after 2 jobs" in err
    db.close()


def test_cli_scheduler_fires_periodic_tasks_that_the_worker_runs(path: str) -> None:
    os.environ["HONKER_TEST_DB"] = path
    from apps import tasks_app

    sched = _cli(path, "scheduler", "apps.tasks_app:db")
    worker = _cli(path, "worker", "apps.tasks_app:db", "--queue", "cron", "--asyncio")
    db = honker.open(path)  # tasks_app.db may be a first test's file (the module is imported once)
    try:
        wait_until(lambda: db.execute("SELECT count(*) FROM honker_results").fetchone()[0] >= 3, timeout=60,
                   what="three periodic runs")
    finally:
        for p in (sched, worker):
            p.send_signal(signal.SIGINT)
        s_out, s_err = sched.communicate(timeout=30)
        w_out, w_err = worker.communicate(timeout=30)
    assert sched.returncode == 0 and worker.returncode == 0, (s_err, w_err)
    assert "fired tick at" in s_err and "scheduler: stopped" in s_err
    assert " cron done " in w_err
    [s] = [s for s in db.schedules() if s["name"] == "tick"]
    assert s["queue"] == "cron" and s["payload"]["task"] == tasks_app.tick.name
    db.close()
