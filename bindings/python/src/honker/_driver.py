"""Finding the extension and a SQLite driver that can load it, and loading it into a connection.

Driver order: the stdlib ``sqlite3`` when it was built with extension loading (Debian's python3),
else ``pysqlite3`` (``pysqlite3-binary`` from PyPI), else ``sqlean`` (``sqlean.py``). ``HONKER_DRIVER``
(``sqlite3``, ``pysqlite3`` or ``sqlean``) forces one.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Type

from .errors import ExtensionError, error_for

MIN_SQLITE = (3, 38, 0)
MIN_EXTENSION = (0, 1, 0)
_LIB_NAME = "libhonker_ext.so" if sys.platform.startswith("linux") else (
    "libhonker_ext.dylib" if sys.platform == "darwin" else "honker_ext.dll")

_DRIVER_MODULES = {"sqlite3": "sqlite3", "pysqlite3": "pysqlite3.dbapi2", "sqlean": "sqlean"}


def extension_path() -> str:
    """The path of the extension this package loads: ``$HONKER_EXT`` if set, else the one in the package.

    Raises:
        ExtensionError: (``ext.not_found``) when neither exists; the message names the paths tried.
    """
    env = os.environ.get("HONKER_EXT")
    if env:
        if not (os.path.exists(env) or os.path.exists(env + Path(_LIB_NAME).suffix)):
            raise ExtensionError("ext.not_found", f"HONKER_EXT={env!r} does not exist")
        return env
    packaged = Path(__file__).resolve().parent / _LIB_NAME
    if packaged.exists():
        return str(packaged)
    raise ExtensionError(
        "ext.not_found",
        f"no {_LIB_NAME} at {packaged} (the package was installed without it) and HONKER_EXT is not set",
    )


@dataclass
class Driver:
    """A DB-API module that can load extensions, and what its SQLite supports."""

    name: str
    module: ModuleType
    error: Type[BaseException]
    features: Dict[str, FrozenSet[int]] = field(default_factory=dict)
    checked: bool = False

    @property
    def sqlite_version(self) -> str:
        return str(self.module.sqlite_version)

    def has(self, function: str, nargs: int = -2) -> bool:
        """Whether the loaded extension registers ``function`` (with ``nargs`` arguments, if given)."""
        n = self.features.get(function)
        if n is None:
            return False
        return nargs == -2 or nargs in n or -1 in n


def _can_load(module: ModuleType) -> bool:
    conn_cls = getattr(module, "Connection", None)
    version = tuple(getattr(module, "sqlite_version_info", (0, 0, 0)))
    return conn_cls is not None and hasattr(conn_cls, "enable_load_extension") and version >= MIN_SQLITE


_lock = threading.Lock()
_driver: Optional[Driver] = None
_by_module: Dict[str, Driver] = {}


def _driver_of_module(name: str, module: ModuleType) -> Driver:
    # Named by what it is: "sqlite3" may be pysqlite3 put in its place (use_pysqlite3 for Django).
    name = module.__name__.split(".")[0]
    d = _by_module.get(module.__name__)
    if d is None:
        d = Driver(name=name, module=module, error=module.Error)
        _by_module[module.__name__] = d
    return d


def driver() -> Driver:
    """The driver ``honker.open`` uses (picked once per process).

    Raises:
        ExtensionError: (``ext.no_driver``) when no installed driver can load extensions.
    """
    global _driver
    with _lock:
        if _driver is not None:
            return _driver
        forced = os.environ.get("HONKER_DRIVER")
        names = [forced] if forced else list(_DRIVER_MODULES)
        tried: List[str] = []
        for name in names:
            modname = _DRIVER_MODULES.get(name, name)
            try:
                module = importlib.import_module(modname)
            except ImportError:
                tried.append(f"{name}: not installed")
                continue
            if not _can_load(module):
                tried.append(f"{name}: SQLite {getattr(module, 'sqlite_version', '?')} "
                             "without extension loading or older than 3.38")
                continue
            _driver = _driver_of_module(name, module)
            return _driver
        raise ExtensionError(
            "ext.no_driver",
            "no SQLite driver that can load extensions (" + "; ".join(tried) + "); "
            "install one: pip install pysqlite3-binary (Linux x86_64) or pip install sqlean.py",
        )


def driver_of(conn: Any) -> Driver:
    """The driver a connection the application opened belongs to (stdlib, pysqlite3 or sqlean)."""
    for name, modname in _DRIVER_MODULES.items():
        module = sys.modules.get(modname)
        if module is not None and isinstance(conn, module.Connection):
            if not _can_load(module):
                raise ExtensionError(
                    "ext.no_driver",
                    f"this connection's driver ({modname}, SQLite {module.sqlite_version}) cannot load "
                    "extensions; open it with pysqlite3 or sqlean instead",
                )
            with _lock:
                return _driver_of_module(name, module)
    raise ExtensionError("ext.no_driver", f"not a connection of a supported driver: {type(conn)!r}")


def load_into(conn: Any, drv: Driver) -> None:
    """Load the extension into ``conn`` (once per connection is enough; again is harmless)."""
    path = extension_path()
    try:
        conn.enable_load_extension(True)
        try:
            conn.load_extension(path)
        finally:
            conn.enable_load_extension(False)
    except drv.error as e:
        # The extension's own refusal at load (e.g. schema.too_new) keeps its code.
        m = re.search(r"honker: ([a-z_]+\.[a-z_]+): (.*)", str(e), re.DOTALL)
        if m is not None:
            raise error_for(m.group(1), m.group(2)) from None
        raise ExtensionError("ext.load_failed", f"cannot load {path}: {e}") from e
    if not drv.checked:
        _check(conn, drv, path)


def _check(conn: Any, drv: Driver, path: str) -> None:
    """Check the extension's version and record which of its functions exist (once per driver)."""
    version = str(conn.execute("SELECT honker_version()").fetchone()[0])
    try:
        found: Tuple[int, ...] = tuple(int(p) for p in version.split("-")[0].split(".")[:3])
    except ValueError:
        found = (0, 0, 0)
    if found < MIN_EXTENSION:
        raise ExtensionError(
            "ext.too_old",
            f"{path} is honker {version}; this package needs >= {'.'.join(map(str, MIN_EXTENSION))}",
        )
    rows = conn.execute(
        "SELECT name, narg FROM pragma_function_list WHERE name LIKE 'honker%'"
    ).fetchall()
    features: Dict[str, set[int]] = {}
    for name, narg in rows:
        features.setdefault(str(name), set()).add(int(narg))
    with _lock:
        drv.features = {k: frozenset(v) for k, v in features.items()}
        drv.checked = True


def named(name: str) -> Driver:
    """The driver ``name`` (``sqlite3``, ``pysqlite3`` or ``sqlean``), checked that it can load extensions."""
    modname = _DRIVER_MODULES.get(name, name)
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise ExtensionError("ext.no_driver", f"driver {name!r} is not installed: {e}") from None
    if not _can_load(module):
        raise ExtensionError("ext.no_driver", f"driver {name!r} (SQLite {module.sqlite_version}) cannot load "
                             "extensions or is older than 3.38")
    with _lock:
        return _driver_of_module(name, module)
