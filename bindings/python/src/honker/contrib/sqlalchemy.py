"""SQLAlchemy integration: an engine whose every connection has the extension loaded.

::

    from honker.contrib.sqlalchemy import create_engine, database
    engine = create_engine("sqlite:///app.db")
    with Session(engine) as session:
        session.add(Order(id=42))
        database(session).queue("emails").enqueue({"order": 42}, conn=session)
        session.commit()                         # the job commits with the order

``create_engine`` picks the same driver as ``honker.open`` (so it works on a Python whose stdlib
``sqlite3`` cannot load extensions) and uses SQLAlchemy's recipe for real SQLite transactions
(``BEGIN`` emitted by SQLAlchemy, not by the driver's legacy implicit mode), so honker's calls run
inside the Session's transaction even before the first INSERT.
"""

from __future__ import annotations

from typing import Any, Dict

import sqlalchemy
from sqlalchemy import event

import honker
from honker import _driver
from honker._db import Database, raw_connection


def install(engine: Any) -> Any:
    """Load the extension into every new DBAPI connection of ``engine`` and let SQLAlchemy own BEGIN."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver ...
        honker.attach(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")  # ... SQLAlchemy begins for real, at the start of each transaction

    return engine


def create_engine(url: str, **kwargs: Any) -> Any:
    """``sqlalchemy.create_engine`` for a SQLite file, with honker's driver and :func:`install` applied."""
    kwargs.setdefault("module", _driver.driver().module)
    return install(sqlalchemy.create_engine(url, **kwargs))


def database(bind: Any) -> Database:
    """The honker ``Database`` on the DBAPI connection behind a Session, Connection or Engine connection."""
    if hasattr(bind, "get_bind") and hasattr(bind, "connection"):  # a Session
        bind = bind.connection()
    raw = raw_connection(bind)
    db = _attached.get(id(raw))
    if db is None or db._attached is not raw:
        db = honker.attach(raw, setup=False)
        _attached[id(raw)] = db
    return db


_attached: Dict[int, Database] = {}


__all__ = ["install", "create_engine", "database"]
