"""A worker process whose effect and ack commit in one transaction; reports each job it starts."""
import os
import sys
import time

import honker

path = sys.argv[1]
db = honker.open(path)


def handler(job: honker.Job) -> None:
    sys.stdout.write(f"start {job.id}\n")  # one write: two slot threads print at once
    sys.stdout.flush()
    time.sleep(0.004)  # the work, outside the write lock
    with job.transaction() as tx:
        tx.execute("INSERT INTO effects (job, pid) VALUES (?, ?)", (job.id, os.getpid()))
        time.sleep(0.001)  # the effect is written, not yet committed with the ack


print("ready", flush=True)
db.queue("crash").work(handler, concurrency=2, lease=1.0)
