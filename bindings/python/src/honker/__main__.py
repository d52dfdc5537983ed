"""``python -m honker worker app:db [--queue Q] [--concurrency N]`` and ``python -m honker scheduler app:db``.

``app:db`` names a module and the ``honker.Database`` in it (``module:attribute``, the attribute may be
a dotted path or a function returning the database). The worker runs the ``@db.task`` functions of
that database; both log one line per job or fire and stop cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any, List, Optional

from ._db import Database


def load_database(spec: str) -> Database:
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise SystemExit(f"honker: expected module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, Database):
        obj = obj()
    if not isinstance(obj, Database):
        raise SystemExit(f"honker: {spec} is a {type(obj).__name__}, not a honker.Database")
    return obj


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m honker", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--log-level", default=os.environ.get("HONKER_LOG_LEVEL", "INFO"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="run the database's tasks")
    w.add_argument("app")
    w.add_argument("--queue", "-Q", action="append", help="a queue to work (repeatable; default: every task queue)")
    w.add_argument("--concurrency", "-c", type=int, default=4)
    w.add_argument("--asyncio", action="store_true", help="run tasks on an asyncio loop instead of threads")
    w.add_argument("--shutdown-timeout", type=float, default=30.0)
    w.add_argument("--timeout", type=float, default=None, help="default handler time limit, seconds")
    s = sub.add_parser("scheduler", help="fire the database's schedules (and @db.periodic tasks)")
    s.add_argument("app")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = load_database(args.app)
    try:
        if args.cmd == "worker":
            if args.asyncio:
                aw = db.aworker(args.queue, concurrency=args.concurrency, shutdown_timeout=args.shutdown_timeout,
                                timeout=args.timeout)
                asyncio.run(aw.run(install_signal_handlers=True))
            else:
                db.worker(args.queue, concurrency=args.concurrency, shutdown_timeout=args.shutdown_timeout,
                          timeout=args.timeout).run()
        else:
            db.scheduler().run()
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
