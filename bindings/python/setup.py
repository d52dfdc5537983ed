"""Build step: put libhonker_ext.so into the package.

Order: $HONKER_EXT_PATH (a built extension, as CI sets it), else build it with cargo from the
repository this project lives in (`cargo xtask ext`, falling back to `cargo build --release` of
honker-ext), else fail with a message naming what is missing. The wheel is platform-specific
(py3-none-<platform>): it carries a native library but no CPython extension module.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
LIB = "libhonker_ext.dylib" if sys.platform == "darwin" else "libhonker_ext.so"


def find_repo():
    for p in [HERE, *HERE.parents]:
        if (p / "honker-ext" / "Cargo.toml").exists():
            return p
    return None


def built_extension():
    env = os.environ.get("HONKER_EXT_PATH")
    if env and Path(env).is_file():
        return Path(env)
    packaged = HERE / "src" / "honker" / LIB
    repo = find_repo()
    if repo is None:
        if packaged.exists():
            return packaged  # an sdist that already carries the library
        raise SystemExit(f"honker: no {LIB}: set HONKER_EXT_PATH, or build from the honker repository (cargo needed)")
    if shutil.which("cargo") is None:
        raise SystemExit("honker: building the extension needs cargo (https://rustup.rs) or HONKER_EXT_PATH")
    out = repo / "honker-ext" / "target" / "release" / LIB
    try:
        subprocess.run(["cargo", "xtask", "ext"], cwd=repo, check=True, stdout=sys.stderr)
    except subprocess.CalledProcessError:
        subprocess.run(["cargo", "build", "--release", "--manifest-path", str(repo / "honker-ext" / "Cargo.toml")],
                       cwd=repo, check=True, stdout=sys.stderr)
    if not out.exists():
        raise SystemExit(f"honker: cargo finished but {out} is missing")
    return out


class BuildPy(build_py):
    def run(self):
        super().run()
        src = built_extension()
        dest = Path(self.build_lib) / "honker" / LIB
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o755)


class BdistWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
