"""An application module as a user would write it: the CLI loads ``tests.apps.tasks_app:db``."""
import os

import honker

db = honker.open(os.environ["HONKER_TEST_DB"])


@db.task(queue="math")
def add(a: int, b: int) -> int:
    return a + b


@db.task(queue="math", max_attempts=1)
def explode() -> None:
    raise RuntimeError("kaboom")


@db.periodic("@every 250ms", name="tick", queue="cron")
def tick() -> str:
    return "tock"
