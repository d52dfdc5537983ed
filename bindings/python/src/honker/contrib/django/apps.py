"""The Django app: loads the extension into every SQLite connection Django opens."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _load_honker(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "sqlite":
        return
    from .backend import database_for

    database_for(connection)


class HonkerConfig(AppConfig):
    name = "honker.contrib.django"
    label = "honker"
    verbose_name = "honker"

    def ready(self) -> None:
        connection_created.connect(_load_honker, dispatch_uid="honker.load_extension")
