"""Build the one extension, tunpump._core: a thin Cython binding plus csrc/*/*.c.

Environment knobs (documented in README.md):
  TUNPUMP_OPT=-O3        optimisation flags (default -O2; never -march=native)
  TUNPUMP_SANITIZE=1     ASan + UBSan build (run with libasan preloaded)
  TUNPUMP_WERROR=1       warnings are errors (on by default when CI is set)
"""
import glob
import os
import shlex

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# csrc/ is split by layer: packet/ (pure functions over buffers, no system
# I/O), os/ (devices, namespaces, socket addresses), pump/ (workers and
# endpoints), tools/ (the bench's traffic generator).
CSRC_DIRS = ["csrc/packet", "csrc/os", "csrc/pump", "csrc/tools"]
CSRC = sorted(f for d in CSRC_DIRS for f in glob.glob(f"{d}/*.c"))
HEADERS = sorted(f for d in CSRC_DIRS for f in glob.glob(f"{d}/*.h"))


def _flags():
    base = ["-std=gnu11", "-g"] + shlex.split(os.environ.get("TUNPUMP_OPT", "-O2"))
    link = ["-pthread"]
    if os.environ.get("TUNPUMP_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        base += san
        link += san
    werror = os.environ.get("TUNPUMP_WERROR", "1" if os.environ.get("CI") else "0") == "1"
    return base, link, werror


class BuildExt(build_ext):
    """Compile csrc/ with strict warnings, then the Cython output with the
    warnings its generated code is known to trip turned off."""

    def build_extension(self, ext):
        base, link, werror = _flags()
        strict = ["-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Wformat=2"]
        if werror:
            strict.append("-Werror")
        objects = self.compiler.compile(
            CSRC, output_dir=self.build_temp, include_dirs=CSRC_DIRS,
            extra_postargs=base + strict + ["-pthread"], depends=HEADERS)
        ext.extra_objects = objects
        ext.extra_compile_args = base + ["-Wall", "-Wno-unused-function",
                                         "-Wno-unused-parameter"] + (["-Werror"] if werror else [])
        ext.extra_link_args = link
        super().build_extension(ext)


extension = Extension(
    "tunpump._core",
    sources=["tunpump/_core.pyx"],
    include_dirs=CSRC_DIRS,
    depends=CSRC + HEADERS,
)

setup(
    ext_modules=cythonize([extension], language_level=3,
                          compiler_directives={"embedsignature": True}),
    cmdclass={"build_ext": BuildExt},
)
