"""The interop driver for bindings/python (protocol: interop/README.md), over the binding's public API.

One actor per process: JSON requests on stdin, one JSON answer per line on stdout. Values the binding
hands back parsed are serialised compact, keys in order, non-ASCII unescaped (the stored text's form).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, Callable, Dict, List, Optional

import honker

PATH = sys.argv[1]
db: Optional[honker.Database] = None


def dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def the_db() -> honker.Database:
    global db
    if db is None:
        db = honker.open(PATH)
    return db


def parse(text: str) -> Any:
    """A payload argument (JSON text) as the value the binding's API takes."""
    try:
        return json.loads(text)
    except ValueError as e:
        raise honker.PayloadError("payload.not_json", f"payload is not JSON: {e}") from None


def sec(ms: Any) -> Optional[float]:
    return None if ms is None else ms / 1000


def held(a: Dict[str, Any]) -> honker.Job:
    return honker.Job(the_db(), a["job_id"], a.get("queue", ""), None, 0, 0, a["lease_token"], 0, 0)


def job_obj(j: honker.Job) -> Dict[str, Any]:
    return {"id": j.id, "queue": j.queue, "payload": j.payload, "attempts": j.attempts,
            "max_attempts": j.max_attempts, "lease_token": j.lease_token,
            "lease_expires_ms": j.lease_expires_ms, "priority": j.priority}


_ENQUEUE = {"delay_ms", "run_at_ms", "priority", "max_attempts", "expires_in_ms", "expires_at_ms", "dedup_key"}
_CONFIGURE = {"lease_ms": "lease", "backoff_base_ms": "backoff_base", "backoff_cap_ms": "backoff_cap",
              "dead_retention_ms": "dead_retention", "keep_history_ms": "keep_history",
              "max_attempts": "max_attempts", "max_payload_bytes": "max_payload_bytes", "paused": "paused"}


def enqueue(a: Dict[str, Any]) -> Any:
    d = the_db()
    o = a.get("options") or {}
    if not isinstance(o, dict) or set(o) - _ENQUEUE:
        # Options the API has no keyword for: the same SQL, through the binding's error mapping.
        return d.execute("SELECT honker_enqueue(?, ?, ?)", (a["queue"], a["payload"], dumps(o))).fetchone()[0]
    expires: Any = None
    if "expires_in_ms" in o:
        expires = sec(o["expires_in_ms"])
    elif "expires_at_ms" in o:
        expires = dt.datetime.fromtimestamp(o["expires_at_ms"] / 1000, dt.timezone.utc)
    return d.queue(a["queue"]).enqueue(
        parse(a["payload"]), delay=sec(o.get("delay_ms")), run_at=sec(o.get("run_at_ms")),
        priority=o.get("priority"), max_attempts=o.get("max_attempts"), expires=expires,
        dedup_key=o.get("dedup_key"))


def configure(a: Dict[str, Any]) -> Any:
    o = a.get("options") or {}
    if not isinstance(o, dict) or set(o) - set(_CONFIGURE):
        return json.loads(the_db().execute("SELECT honker_queue_configure(?, ?)",
                                           (a["queue"], dumps(o))).fetchone()[0])
    kw = {_CONFIGURE[k]: (sec(v) if k.endswith("_ms") else v) for k, v in o.items()}
    return the_db().queue(a["queue"]).configure(**kw)


def listen(a: Dict[str, Any], timeout: float) -> List[Dict[str, Any]]:
    lst = the_db().listen(a["channel"], after=a["after_id"], batch=a["limit"])
    out = []
    n = lst.get(timeout)
    while n is not None and len(out) < a["limit"]:
        out.append({"id": n.id, "channel": n.channel, "payload": n.payload, "created_ms": n.created_ms})
        n = lst.get(0) if len(out) < a["limit"] else None
    lst.close()
    return out


def sql(a: Dict[str, Any]) -> Any:
    cur = the_db().execute(a["sql"])
    if cur.description is None:
        return []
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def close(a: Dict[str, Any]) -> None:
    global db
    if db is not None:
        db.close()
        db = None


def schedule(a: Dict[str, Any]) -> Any:
    o = dict(a.get("options") or {})
    tz = o.pop("tz", None)
    return the_db().schedule(a["name"], a["cron"], a["queue"], parse(a["payload"]), tz=tz, **o)


OPS: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "open": lambda a: (the_db(), None)[1],
    "close": close,
    "begin": lambda a: (the_db().execute("BEGIN IMMEDIATE"), None)[1],
    "commit": lambda a: (the_db().execute("COMMIT"), None)[1],
    "rollback": lambda a: (the_db().execute("ROLLBACK"), None)[1],
    "sql": sql,
    "queue_configure": configure,
    "enqueue": enqueue,
    "claim": lambda a: [job_obj(j) for j in the_db().queue(a["queue"]).claim(
        a["n"], worker=a["worker"], lease=sec(a.get("lease_ms")))],
    "ack": lambda a: (held(a).ack(), 1)[1],
    "retry": lambda a: held(a).retry(sec(a.get("delay_ms")), a.get("error")),
    "fail": lambda a: (held(a).fail(a["error"]), 1)[1],
    "job": lambda a: the_db().queue("any").job(a["job_id"]),
    "dead_requeue": lambda a: the_db().queue(a.get("queue") or "any").requeue(a["job_id"]),
    "result_save": lambda a: the_db().execute("SELECT honker_result_save(?, ?, ?)",
                                              (a["job_id"], a["value"], a.get("ttl_ms"))).fetchone()[0],
    "result_get": lambda a: the_db().queue("any").result(a["job_id"]),
    "notify": lambda a: the_db().notify(a["channel"], parse(a["payload"])),
    "listen": lambda a: listen(a, 0),
    "listen_wait": lambda a: listen(a, a["timeout_ms"] / 1000),
    "publish": lambda a: the_db().stream(a["topic"]).publish(parse(a["payload"]), key=a.get("key")),
    "read": lambda a: [{"offset": e.offset, "topic": e.topic, "key": e.key, "payload": e.payload,
                        "created_ms": e.created_ms}
                       for e in the_db().stream(a["topic"]).read(a["after_offset"], a["limit"])],
    "commit_offset": lambda a: int(the_db().stream(a["topic"]).commit(a["consumer"], a["offset"])),
    "offset": lambda a: the_db().stream(a["topic"]).offset(a["consumer"]),
    "schedule": schedule,
    "cron_next": lambda a: the_db().execute("SELECT honker_cron_next(?, ?, ?)",
                                            (a["cron"], a["after_ms"], a.get("tz"))).fetchone()[0],
    "cron_tick": lambda a: the_db().tick(a.get("now_ms")),
}


def answer(req: Dict[str, Any]) -> Dict[str, Any]:
    rid = req.get("id")
    op = OPS.get(str(req.get("op")))
    if op is None:
        return {"id": rid, "ok": False, "error": {"code": "driver.unsupported_op", "message": str(req.get("op"))}}
    try:
        return {"id": rid, "ok": True, "value": op(req.get("args") or {})}
    except honker.HonkerError as e:
        return {"id": rid, "ok": False, "error": {"code": e.code, "message": e.message}}
    except (KeyError, TypeError, ValueError) as e:
        return {"id": rid, "ok": False, "error": {"code": "driver.bad_args", "message": repr(e)}}
    except Exception as e:  # the driver's SQLite errors
        name = type(e).__name__
        if name in ("OperationalError", "DatabaseError", "IntegrityError", "ProgrammingError"):
            busy = "locked" in str(e) or "busy" in str(e)
            return {"id": rid, "ok": False, "error": {"code": "sqlite.busy" if busy else "sqlite.error",
                                                      "message": str(e)}}
        return {"id": rid, "ok": False, "error": {"code": "driver.failed", "message": repr(e)}}


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        out = answer(json.loads(line))
        sys.stdout.write(dumps(out) + "\n")
        sys.stdout.flush()
    close({})
    return 0


if __name__ == "__main__":
    sys.exit(main())
