"""Django 5.2 with the django-tasks backport: honker as the TASKS backend, for real."""
import os
import signal
import subprocess
import sys
import tempfile

import pytest

_DIR = tempfile.mkdtemp(prefix="honker-django-")
os.environ["HONKER_DJANGO_DB"] = os.path.join(_DIR, "django.db")
os.environ["DJANGO_SETTINGS_MODULE"] = "djproj.settings"

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django_tasks import TaskResultStatus  # noqa: E402
from django_tasks.exceptions import InvalidTaskError  # noqa: E402

import honker  # noqa: E402
from conftest import HERE, child_env, wait_until  # noqa: E402
from djproj import tasks  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def schema() -> None:
    with connection.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
        c.execute("CREATE TABLE IF NOT EXISTS sent (order_id INTEGER)")


@pytest.fixture
def worker():  # type: ignore[no-untyped-def]
    p = subprocess.Popen([sys.executable, str(HERE / "djproj" / "manage.py"), "honker_worker", "--queue", "default",
                          "--queue", "mail", "--concurrency", "2"],
                         env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield p
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    p.stderr_text = err  # type: ignore[attr-defined]


def _refresh(result):  # type: ignore[no-untyped-def]
    result.refresh()
    return result


def test_the_extension_is_loaded_into_djangos_connection_on_connection_created() -> None:
    connection.close()
    with connection.cursor() as c:
        c.execute("SELECT honker_version()")
        assert c.fetchone()[0]
        c.execute("PRAGMA journal_mode")
        assert c.fetchone()[0] == "wal"


def test_enqueue_inside_atomic_commits_or_rolls_back_with_the_block() -> None:
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with connection.cursor() as c:
                c.execute("INSERT INTO orders (id) VALUES (1)")
            tasks.record.enqueue(1)
            raise RuntimeError("rolled back")
    with transaction.atomic():
        tasks.record.enqueue(2)  # first statement of the block: still inside it
        with connection.cursor() as c:
            c.execute("INSERT INTO orders (id) VALUES (2)")
    db = honker.open(os.environ["HONKER_DJANGO_DB"])
    jobs = db.queue("mail").claim(10)
    assert [j.payload["args"] for j in jobs] == [[2]]
    for j in jobs:
        j.release()
    db.close()


def test_worker_command_runs_tasks_and_results_come_back(worker) -> None:  # type: ignore[no-untyped-def]
    db = honker.open(os.environ["HONKER_DJANGO_DB"])
    db.queue("default", backoff_base=0)  # queue options are stored: the failing task retries at once
    db.close()
    r = tasks.add.enqueue(2, 3)
    assert r.status == TaskResultStatus.READY
    ctx = tasks.attempt.enqueue(7)
    bad = tasks.broken.enqueue()
    wait_until(lambda: _refresh(r).status == TaskResultStatus.SUCCESSFUL, timeout=60, what="add")
    assert r.return_value == 5
    wait_until(lambda: _refresh(ctx).is_finished, timeout=60, what="attempt")
    assert ctx.return_value == 1
    wait_until(lambda: _refresh(bad).status == TaskResultStatus.FAILED, timeout=120, what="broken to fail")
    assert "ValueError" in bad.errors[0].traceback
    # The job enqueued in the committed atomic block of the previous test ran, exactly once.
    wait_until(lambda: connection.cursor().execute("SELECT count(*) FROM sent").fetchone()[0] == 1, timeout=60,
               what="record(2)")
    with connection.cursor() as c:
        c.execute("SELECT order_id FROM sent")
        assert c.fetchall() == [(2,)]


def test_get_result_of_an_unknown_id() -> None:
    from django_tasks import default_task_backend
    from django_tasks.exceptions import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("999999")


def test_queue_not_in_the_backend_is_refused_and_nothing_written() -> None:
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM honker_jobs")
        before = c.fetchone()[0]
    with pytest.raises(InvalidTaskError):
        tasks.add.using(queue_name="elsewhere").enqueue(1, 2)
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM honker_jobs")
        assert c.fetchone()[0] == before
