import sys
import time

import honker

db = honker.open(sys.argv[1])


def handler(job: honker.Job) -> None:
    print("started", flush=True)
    while True:
        time.sleep(0.001)


import logging

logging.basicConfig(level=logging.INFO)
db.queue("sig").work(handler, shutdown_timeout=0.2)
db.close()
