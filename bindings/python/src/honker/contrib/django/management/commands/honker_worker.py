"""``manage.py honker_worker [--queue Q] [--concurrency N]``: run Django tasks from honker queues."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connections

import honker
from honker.contrib.django.backend import run_job


class Command(BaseCommand):
    help = "Run tasks enqueued with honker's Django task backend; stops cleanly on SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", "-Q", action="append", help="queue to work (repeatable; default: default)")
        parser.add_argument("--concurrency", "-c", type=int, default=4)
        parser.add_argument("--database", default="default")
        parser.add_argument("--shutdown-timeout", type=float, default=30.0)

    def handle(self, *args: Any, **opts: Any) -> None:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        conn = connections[opts["database"]]
        path = str(settings.DATABASES[opts["database"]]["NAME"])
        conn.close()
        db = honker.open(path)
        queues = opts["queue"] or ["default"]
        holder: dict = {}  # type: ignore[type-arg]

        def handler(job: honker.Job) -> Any:
            close_old_connections()
            try:
                return run_job(job, holder["worker"].id)
            finally:
                close_old_connections()

        worker = honker.Worker(db, queues, handler, concurrency=opts["concurrency"],
                               shutdown_timeout=opts["shutdown_timeout"], name="django")
        holder["worker"] = worker
        self.stderr.write(f"honker_worker: {path} queues {','.join(queues)}")
        try:
            worker.run()
        finally:
            db.close()
