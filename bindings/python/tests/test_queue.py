import datetime as dt
import time

import pytest

import honker


def test_enqueue_claim_ack_and_job_lookup(db: honker.Database) -> None:
    q = db.queue("emails")
    jid = q.enqueue({"to": "a@example.com"})
    assert q.job(jid)["state"] == "pending"
    [job] = q.claim(5)
    assert (job.id, job.payload, job.attempts) == (jid, {"to": "a@example.com"}, 1)
    assert q.job(jid)["state"] == "running"
    job.ack()
    assert q.job(jid) is None
    assert q.stats().pending == 0
    with pytest.raises(honker.LeaseLost):
        job.ack()


def test_ack_many_acks_a_batch_in_one_call_and_skips_lost_leases(db: honker.Database) -> None:
    q = db.queue("batch")
    ids = q.enqueue_many([{"n": i} for i in range(5)])
    jobs = q.claim(5, lease=60)
    assert sorted(j.id for j in jobs) == ids
    assert q.ack_many([]) == 0
    # A stale token (as after a lost lease) is not acked and does not fail the others.
    stale = jobs[0]
    stale_copy = honker.queue.Job(db, stale.id, stale.queue, stale.payload, stale.attempts,
                                  stale.max_attempts, stale.lease_token + 1, stale.lease_expires_ms,
                                  stale.priority)
    assert q.ack_many([stale_copy, *jobs[1:]]) == 4
    assert q.job(stale.id)["state"] == "running"
    with db.transaction() as tx:
        assert q.ack_many([stale], conn=tx) == 1
        tx.connection.execute("SELECT 1")
    assert q.stats().running == 0 and q.stats().pending == 0


def test_ack_many_rolls_back_with_the_callers_transaction(db: honker.Database) -> None:
    q = db.queue("batch-rb")
    q.enqueue_many(["a", "b"])
    jobs = q.claim(2)
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            assert q.ack_many(jobs, conn=tx) == 2
            raise RuntimeError("business write failed")
    assert q.stats().running == 2
    assert q.ack_many(jobs) == 2


def test_enqueue_options(db: honker.Database) -> None:
    q = db.queue("opts")
    later = q.enqueue("later", delay=3600)
    at = q.enqueue("at", run_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    low = q.enqueue("low", priority=0)
    high = q.enqueue("high", priority=10)
    one = q.enqueue("one-shot", max_attempts=1)
    expired = q.enqueue("expired", expires=dt.datetime(2000, 1, 1))
    d = q.enqueue("dedup", dedup_key="k")
    assert q.enqueue("dedup again", dedup_key="k") == d  # the live job's id; nothing written
    assert q.job(later)["state"] == "scheduled"
    assert q.job(at)["state"] == "scheduled"
    assert q.job(one)["max_attempts"] == 1
    st = q.stats()
    assert st.scheduled == 2
    claimed = [j.payload for j in q.claim(10)]
    assert claimed[0] == "high"
    assert set(claimed) == {"high", "low", "one-shot", "dedup"}
    assert q.job(expired) is None or q.job(expired)["state"] in ("dead",)
    assert q.job(low)["state"] == "running" and q.job(high)["state"] == "running"


def test_enqueue_many_is_one_statement_in_order(db: honker.Database) -> None:
    q = db.queue("many")
    ids = q.enqueue_many([{"i": i} for i in range(50)])
    assert ids == sorted(ids) and len(ids) == 50
    assert [j.payload["i"] for j in q.claim(100)] == list(range(50))


def test_retry_fail_release_dead_requeue_purge(db: honker.Database) -> None:
    q = db.queue("life", max_attempts=2, backoff_base=0)
    a = q.enqueue("a")
    [ja] = q.claim()
    assert ja.retry(0, "first")["state"] == "retrying"
    [ja] = q.claim()
    assert ja.attempts == 2
    assert ja.retry(0, "second") == {"state": "dead"}
    [dead] = q.dead()
    assert dead["id"] == a and dead["last_error"] == "second"
    assert q.stats().dead == 1
    assert q.requeue(a) == 1
    [ja] = q.claim()
    ja.release()
    assert q.job(a)["state"] == "pending"
    [ja] = q.claim()
    ja.fail("fatal")
    assert q.dead()[0]["reason"] in ("failed", "fail")
    assert q.purge() == 1
    assert q.dead() == []


def test_release_gives_the_attempt_back(db: honker.Database) -> None:
    q = db.queue("rel")
    jid = q.enqueue(1)
    [j] = q.claim()
    assert j.attempts == 1
    j.release()
    [j] = q.claim()
    assert j.attempts == 1 and j.id == jid


def test_job_enqueued_in_a_rolled_back_transaction_never_runs(db: honker.Database, path: str) -> None:
    q = db.queue("tx")
    with pytest.raises(KeyError):
        with db.transaction():
            q.enqueue("ghost")
            raise KeyError
    q.enqueue("real")
    seen = []
    w = q.worker(lambda job: seen.append(job.payload), concurrency=2).start()
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop(timeout=5)
    assert seen == ["real"]
    assert db.execute("SELECT count(*) FROM honker_jobs").fetchone()[0] == 0


def test_ack_with_result_and_heartbeat(db: honker.Database) -> None:
    q = db.queue("res")
    jid = q.enqueue(1)
    [j] = q.claim(lease=1)
    before = j.lease_expires_ms
    assert j.heartbeat(60) > before
    j.ack({"sum": 3})
    assert q.result(jid) == {"sum": 3}


def test_claim_wait_wakes_on_enqueue_and_times_out(db: honker.Database, path: str) -> None:
    q = db.queue("w")
    assert q.claim_wait(timeout=0.05) == []
    import threading

    other = honker.open(path)
    t = threading.Timer(0.05, lambda: other.queue("w").enqueue("x"))
    t.start()
    [j] = q.claim_wait(timeout=30)
    assert j.payload == "x"
    t.join()
    other.close()


def test_delayed_job_is_claimed_when_due_without_any_commit(db: honker.Database) -> None:
    q = db.queue("timer")
    q.enqueue("soon", delay=0.2)
    [j] = q.claim_wait(timeout=30)  # sleeps until next_due, not a poll
    assert j.payload == "soon"


def test_cancel(db: honker.Database) -> None:
    q = db.queue("c")
    jid = q.enqueue(1)
    assert q.cancel(jid)
    assert not q.cancel(jid)
    assert q.claim() == []
