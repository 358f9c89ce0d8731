"""The tree keeps the shape docs/design.md describes: no two modules (or C
files) import each other in a circle, tests share code only
through tests/helpers, and no C or Cython file grows past the size that made
the old pump hard to read."""
import ast
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


def _cycles(graph):
    """The strongly connected parts of more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _runtime_imports(tree):
    """Import nodes that run on import (not under `if TYPE_CHECKING:`)."""
    todo = list(tree.body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING":
            continue
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            yield n
        todo.extend(ast.iter_child_nodes(n))


def test_no_python_modules_import_each_other_in_a_circle():
    mods = {}
    for path in glob.glob(os.path.join(ROOT, "tunpump", "**", "*.py"), recursive=True):
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        mods[name[:-9] if name.endswith(".__init__") else name] = path
    exts = {os.path.relpath(p, ROOT)[:-4].replace(os.sep, ".")   # _core, bench._tools: no imports to follow
            for p in glob.glob(os.path.join(ROOT, "tunpump", "**", "*.pyx"), recursive=True)}
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.endswith("__init__.py") else m.rsplit(".", 1)[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        for n in _runtime_imports(tree):
            if isinstance(n, ast.Import):
                graph[m] |= {a.name for a in n.names if a.name in mods and a.name != m}
                continue
            base = pkg.split(".")[:len(pkg.split(".")) - max(n.level - 1, 0)] if n.level else []
            target = ".".join(base + ([n.module] if n.module else []))
            for a in n.names:   # a submodule if there is one, else the module named
                sub = target + "." + a.name
                dep = sub if sub in mods or sub in exts else target
                if dep in mods and dep != m:
                    graph[m].add(dep)
    assert _cycles(graph) == []


def test_no_c_files_include_each_other_in_a_circle():
    graph = {}
    for path in glob.glob(os.path.join(ROOT, "csrc", "*", "*.[ch]")) + \
            glob.glob(os.path.join(ROOT, "tunpump", "include", "*.h")):
        with open(path) as f:
            graph[os.path.basename(path)] = set(re.findall(r'#include "(?:.*/)?([^"/]+)"', f.read()))
    graph = {f: {d for d in deps if d in graph} for f, deps in graph.items()}
    assert _cycles(graph) == []
