"""A source tree without its compiled extension (as after a non-editable
`pip install .`, run from the checkout) says what to do instead of failing
with "partially initialized module"."""
import os
import shutil
import subprocess
import sys

import tunpump

PKG = os.path.dirname(tunpump.__file__)


def _copy_pkg(dst, with_ext):
    def ignore(d, names):
        return [n for n in names if n == "__pycache__" or (not with_ext and n.endswith(".so"))]
    shutil.copytree(PKG, os.path.join(dst, "tunpump"), ignore=ignore)


def _import(cwd):
    return subprocess.run([sys.executable, "-c", "import tunpump"], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=""))


def test_source_tree_without_extension(tmp_path):
    _copy_pkg(str(tmp_path), with_ext=False)
    r = _import(str(tmp_path))
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "pip install -e ." in r.stderr and "outside the checkout" in r.stderr, r.stderr
    assert "partially initialized" not in r.stderr


def test_source_tree_with_extension_imports(tmp_path):
    _copy_pkg(str(tmp_path), with_ext=True)
    r = _import(str(tmp_path))
    assert r.returncode == 0, r.stderr
