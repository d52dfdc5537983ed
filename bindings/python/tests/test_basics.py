import os
import sqlite3
import threading

import pytest

import honker
from honker import _driver


def test_extension_path_is_the_packaged_library_or_honker_ext(monkeypatch: pytest.MonkeyPatch) -> None:
    p = honker.extension_path()
    assert os.path.exists(p)
    if not os.environ.get("HONKER_EXT"):  # CI: the library the wheel carries
        assert os.path.dirname(p) == os.path.dirname(honker.__file__)
    monkeypatch.setenv("HONKER_EXT", "/nonexistent/libhonker_ext.so")
    with pytest.raises(honker.ExtensionError) as e:
        honker.extension_path()
    assert e.value.code == "ext.not_found"
    assert "/nonexistent/libhonker_ext.so" in str(e.value)


def test_open_applies_setup_and_reports_info(db: honker.Database) -> None:
    c = db.connection()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    info = db.info()
    assert info["journal_mode"] == "wal"
    assert info["version"]
    assert info["schema_version"] >= 5


def test_driver_is_one_that_loads_extensions() -> None:
    d = _driver.driver()
    assert d.name in ("sqlite3", "pysqlite3", "sqlean")
    stdlib_can = hasattr(sqlite3.Connection, "enable_load_extension")
    if stdlib_can and not os.environ.get("HONKER_DRIVER"):
        assert d.name == "sqlite3"
    else:
        assert d.name != "sqlite3"
    assert tuple(d.module.sqlite_version_info) >= (3, 38, 0)
    assert honker.driver_name() == d.name


def test_memory_database_is_refused() -> None:
    with pytest.raises(honker.DatabaseError) as e:
        honker.open(":memory:")
    assert e.value.code == "db.not_file"


def test_transaction_commits_and_rolls_back_with_business_write(db: honker.Database) -> None:
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    q = db.queue("emails")
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders (id) VALUES (1)")
        q.enqueue({"order": 1})
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.execute("INSERT INTO orders (id) VALUES (2)")
            q.enqueue({"order": 2})
            raise RuntimeError("boom")
    assert [r[0] for r in db.execute("SELECT id FROM orders")] == [1]
    assert [j.payload for j in q.claim(10)] == [{"order": 1}]


def test_nested_transaction_is_a_savepoint(db: honker.Database) -> None:
    q = db.queue("q")
    with db.transaction():
        q.enqueue(1)
        with pytest.raises(ValueError):
            with db.transaction():
                q.enqueue(2)
                raise ValueError
    assert [j.payload for j in q.claim(10)] == [1]


def test_each_thread_gets_its_own_connection(db: honker.Database) -> None:
    conns = []
    t = threading.Thread(target=lambda: conns.append(db.connection()))
    t.start()
    t.join()
    assert conns[0] is not db.connection()


def test_attach_runs_in_the_applications_own_connection_and_transaction(path: str) -> None:
    drv = _driver.driver()
    conn = drv.module.connect(path)  # the driver's default (legacy implicit transactions)
    db = honker.attach(conn)
    assert db.connection() is conn
    q = db.queue("q")
    q.enqueue("rolled back")
    conn.rollback()
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    q.enqueue("kept", conn=conn.cursor())
    conn.commit()
    other = honker.open(path)
    assert [j.payload for j in other.queue("q").claim(10)] == ["kept"]
    other.close()
    db.close()
    conn.close()


@pytest.mark.parametrize(
    ("call", "code", "cls"),
    [
        (lambda db: db.queue("q").enqueue({"n": 2**60}), "payload.not_json", honker.PayloadError),
        (lambda db: db.queue("q").enqueue(float("nan")), "payload.not_json", honker.PayloadError),
        (lambda db: db.queue("q").enqueue(object()), "payload.not_json", honker.PayloadError),
        (lambda db: db.queue("q").enqueue(1, dedup_key=5), "queue.bad_option", honker.QueueError),
        (lambda db: db.queue("q").enqueue(1, max_attempts=0), "queue.bad_option", honker.ArgumentError),
        (lambda db: db.queue("q").enqueue_many([1, 2**60]), "payload.not_json", honker.PayloadError),
        (lambda db: db.queue("").enqueue(1), "queue.bad_name", honker.QueueError),
        (lambda db: db.queue("q", bogus=1), "queue.unknown_option", honker.ArgumentError),
        (lambda db: db.queue("q").configure(lease=0), "queue.bad_option", honker.ArgumentError),
        (lambda db: db.notify("", 1), "notify.bad_channel", honker.NotifyError),
        (lambda db: db.stream("t").publish(1e400), "payload.not_json", honker.PayloadError),
        (lambda db: db.schedule("s", "not a cron", "q"), "cron.bad_expression", honker.CronError),
        (lambda db: db.schedule("s", "* * * * *", "q", tz="Mars/Base"), "cron.unknown_zone", honker.CronError),
        (lambda db: db.queue("q").purge(older_than=-1), "queue.bad_option", honker.ArgumentError),
    ],
)
def test_bad_input_gives_the_typed_error_and_writes_nothing(db: honker.Database, call, code, cls) -> None:  # type: ignore[no-untyped-def]
    def counts() -> tuple:  # type: ignore[type-arg]
        return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("honker_jobs", "honker_notifications", "honker_streams", "honker_schedules",
                               "honker_queues"))

    before = counts()
    with pytest.raises(cls) as e:
        call(db)
    assert e.value.code == code
    assert isinstance(e.value, honker.HonkerError)
    assert counts() == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_busy_stays_the_drivers_own_error(path: str) -> None:
    a = honker.open(path, busy_timeout=0.05)
    b = honker.open(path, busy_timeout=0.05)
    with a.transaction():
        a.queue("q").enqueue(1)
        with pytest.raises(b.driver.module.OperationalError) as e:
            b.queue("q").enqueue(2)
        assert not isinstance(e.value, honker.HonkerError)
        assert "locked" in str(e.value)
    a.close()
    b.close()


def test_error_codes_map_to_classes() -> None:
    from honker.errors import error_for

    assert type(error_for("queue.lease_lost", "x")) is honker.LeaseLost
    assert isinstance(error_for("stream.trimmed", "x"), honker.StreamError)
    assert isinstance(error_for("wait.cancelled", "x"), honker.WakeError)
    assert isinstance(error_for("cron.bad_expression", "x"), honker.ArgumentError)
    assert isinstance(error_for("cron.bad_expression", "x"), honker.CronError)
    e = error_for("brand.new_code", "msg")
    assert type(e) is honker.HonkerError and e.code == "brand.new_code"


def test_lone_surrogate_payload_is_payload_not_json(db: honker.Database) -> None:
    with pytest.raises(honker.PayloadError) as e:
        db.notify("c", "\ud800")
    assert e.value.code == "payload.not_json"
    assert db.queue("q").enqueue("caf\u00e9 \U0001f600") > 0  # real non-ASCII text is fine


def test_schema_newer_than_the_extension_is_schema_too_new(path: str) -> None:
    db = honker.open(path)
    db.execute("UPDATE honker_meta SET value = value + 1 WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(honker.SchemaTooNew) as e:
        honker.open(path)
    assert e.value.code == "schema.too_new"


def test_blocking_waits_refuse_inside_an_open_transaction(db: honker.Database) -> None:
    with db.transaction():
        for wait in (lambda: db.listen("c").get(1), lambda: db.queue("q").claim_wait(timeout=1),
                     lambda: db.stream("s").subscribe("x").get(1), lambda: db.lock("l").acquire()):
            with pytest.raises(honker.WaitInTransaction) as e:
                wait()
            assert e.value.code == "wait.in_transaction"
        assert db.listen("c").get(0) is None  # a non-blocking read is fine
