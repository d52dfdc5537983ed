import os
import signal
import time

import honker
from conftest import child, wait_until


def test_kill_9_of_one_of_four_workers_mid_job_loses_nothing_and_applies_nothing_twice(path: str) -> None:
    db = honker.open(path)
    db.execute("CREATE TABLE effects (job INTEGER NOT NULL, pid INTEGER NOT NULL)")
    q = db.queue("crash", backoff_base=0)
    ids = q.enqueue_many([{"n": i} for i in range(400)])
    victim = child("crash_worker.py", path)
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "ready"
    for _ in range(5):  # the victim is working: almost all of its time is spent inside a job
        line = victim.stdout.readline()
        assert line.startswith("start"), repr(line)
    procs = [victim] + [child("crash_worker.py", path) for _ in range(3)]
    wait_until(lambda: db.execute("SELECT count(*) FROM effects WHERE pid != ?", (victim.pid,)).fetchone()[0] >= 20,
               what="the other workers at work")
    # Freeze the victim (SIGSTOP) until it is caught holding a claimed job, then kill -9 it there.
    held: list = []
    for _ in range(200):
        os.kill(victim.pid, signal.SIGSTOP)
        held = [r[0] for r in db.execute("SELECT id FROM honker_jobs WHERE state = 2 AND claimer IN"
                                         " (SELECT id FROM honker_claimers WHERE worker LIKE ?)",
                                         (f"%:{victim.pid}:%",))]
        if held:
            break
        os.kill(victim.pid, signal.SIGCONT)
        time.sleep(0.003)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    # The victim died holding claimed jobs (its 2 slots are nearly always full).
    assert held, ("the victim held no job when killed", victim.pid,
                  db.execute("SELECT state, claimer, count(*) FROM honker_jobs GROUP BY 1, 2").fetchall(),
                  victim.stderr.read() if victim.stderr else "")

    def done() -> bool:
        return db.execute("SELECT count(*) FROM honker_jobs WHERE queue = 'crash'").fetchone()[0] == 0

    try:
        wait_until(done, timeout=25, what="every job acked")
    except AssertionError:
        rows = db.execute("SELECT id, state, attempts, claimer, lease_expires, run_at FROM honker_jobs").fetchall()
        import time as _t
        for p in procs[1:]:
            p.kill()
        errs = [p.communicate()[1][-3000:] for p in procs[1:]]
        raise AssertionError(f"now={int(_t.time()*1000)} left={rows[:10]} errs={errs}")
    for p in procs[1:]:
        p.send_signal(signal.SIGTERM)
    for p in procs[1:]:
        assert p.wait(30) == 0, p.stderr.read() if p.stderr else ""
    counts = dict(db.execute("SELECT job, count(*) FROM effects GROUP BY job").fetchall())
    assert sorted(counts) == sorted(ids)  # nothing lost
    assert set(counts.values()) == {1}  # nothing applied twice
    assert all(counts[j] == 1 for j in held)  # redone by the others, once
    assert not db.execute(f"SELECT 1 FROM effects WHERE pid = ? AND job IN ({','.join('?' * len(held))})",
                          (victim.pid, *held)).fetchall()  # its uncommitted effects rolled back
    assert q.stats().dead == 0
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
