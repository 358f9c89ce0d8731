"""Build a third-party extension the way its author would: copy its sources
into a temporary directory and run its setup.py there with this Python, with
this tree's tunpump importable (for tunpump.get_include()); then import it."""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from typing import Iterable, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def built_extension(src: str, files: Iterable[str], tmpdir: str, module: str) -> Iterator[object]:
    for f in files:
        shutil.copy(os.path.join(src, f), tmpdir)
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmpdir, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    sys.path.insert(0, str(tmpdir))
    try:
        yield importlib.import_module(module)
    finally:
        sys.path.remove(str(tmpdir))
