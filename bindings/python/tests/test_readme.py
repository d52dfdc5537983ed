import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import HERE, child_env


def test_readme_quickstart_runs_as_pasted(tmp_path: Path) -> None:
    readme = (HERE.parent / "README.md").read_text()
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    assert len(code.strip().splitlines()) <= 13
    (tmp_path / "quick.py").write_text(code)
    out = subprocess.run([sys.executable, "quick.py"], cwd=tmp_path, env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sent to ada@example.com"
    assert os.path.exists(tmp_path / "app.db")
