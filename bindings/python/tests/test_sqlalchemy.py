import pytest
from sqlalchemy import Column, Integer, select, text
from sqlalchemy.orm import Session, declarative_base

import honker
from honker.contrib.sqlalchemy import create_engine, database

Base = declarative_base()


class Order(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "orders"
    id = Column(Integer, primary_key=True)


def test_engine_connections_have_the_extension(path: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as c:
        assert c.execute(text("SELECT honker_version()")).scalar()
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_enqueue_on_a_sessions_connection_commits_or_rolls_back_with_the_session(path: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        database(s).queue("emails").enqueue({"order": 1}, conn=s)  # before any INSERT: still in the tx
        s.add(Order(id=1))
        s.rollback()
    with Session(engine) as s:
        s.add(Order(id=2))
        s.flush()
        database(s).queue("emails").enqueue({"order": 2}, conn=s)
        s.commit()
    with Session(engine) as s:
        assert s.scalars(select(Order.id)).all() == [2]
    db = honker.open(path)
    assert [j.payload for j in db.queue("emails").claim(10)] == [{"order": 2}]
    db.close()
    engine.dispose()


def test_bad_payload_through_a_session_is_typed_and_writes_nothing(path: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        with pytest.raises(honker.PayloadError):
            database(s).queue("emails").enqueue({"n": 2**60}, conn=s)
        s.commit()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM honker_jobs")).scalar() == 0
    engine.dispose()
