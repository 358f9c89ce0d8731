"""The tree keeps the shape docs/design.md describes: tests share code only
through tests/helpers, and no C or Cython file grows past the size that made
the old pump hard to read."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lines(path):
    with open(path) as f:
        return sum(1 for _ in f)


def test_no_test_module_imports_another():
    bad = []
    for path in glob.glob(os.path.join(ROOT, "tests", "**", "*.py"), recursive=True):
        if os.sep + "fuzz" + os.sep in path:
            continue   # make_corpus.py reads the table tests' rows on purpose
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if re.match(r"\s*(from|import)\s+test_\w+", line):
                    bad.append(f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}")
    assert not bad, "import shared code from tests/helpers instead:\n" + "\n".join(bad)


def test_source_files_stay_small():
    big = [(p, _lines(p)) for p in glob.glob(os.path.join(ROOT, "csrc", "*", "*.c"))]
    big = [f"{os.path.relpath(p, ROOT)}: {n} lines (limit 700)" for p, n in big if n > 700]
    pyx = glob.glob(os.path.join(ROOT, "tunpump", "**", "*.pyx"), recursive=True)
    pyx += glob.glob(os.path.join(ROOT, "tunpump", "**", "*.pxi"), recursive=True)
    big += [f"{os.path.relpath(p, ROOT)}: {_lines(p)} lines (limit 500)" for p in pyx if _lines(p) > 500]
    assert not big, "\n".join(big)
