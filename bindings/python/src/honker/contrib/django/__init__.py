"""Django integration: a backend for Django's task framework (``django.tasks`` / the ``django-tasks``
backport), the extension loaded into every SQLite connection, and ``manage.py honker_worker``.

settings.py::

    INSTALLED_APPS = [..., "django_tasks", "honker.contrib.django"]
    TASKS = {"default": {"BACKEND": "honker.contrib.django.HonkerBackend"}}

A task enqueued inside ``transaction.atomic()`` is a row in the same transaction: it commits or rolls
back with the block, and no worker can see it before the commit.

On a Python whose stdlib ``sqlite3`` cannot load extensions (pyenv, python.org macOS builds), call
:func:`use_pysqlite3` at the top of ``settings.py`` so Django's SQLite backend uses ``pysqlite3``.
"""

from __future__ import annotations

import sys
from typing import Any

from .backend import HonkerBackend

default_app_config = "honker.contrib.django.apps.HonkerConfig"


def use_pysqlite3() -> bool:
    """Make ``import sqlite3`` return ``pysqlite3`` when the stdlib one cannot load extensions.

    Call it before Django loads its database backend (the top of ``settings.py``). Returns
    whether it swapped.
    """
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return False
    import pysqlite3  # type: ignore[import-not-found,unused-ignore]
    import pysqlite3.dbapi2  # type: ignore[import-not-found,unused-ignore]

    mod: Any = pysqlite3
    sys.modules["sqlite3"] = mod
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
    return True


__all__ = ["HonkerBackend", "use_pysqlite3"]
