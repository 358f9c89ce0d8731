"""An example tunpump transform, built outside tunpump against its public
header only:  pip install .  (or: python setup.py build_ext --inplace)."""
import tunpump
from setuptools import Extension, setup

setup(
    name="tpxor",
    version="1.0",
    description="XOR: an example tunpump transform (a demonstration, not security)",
    ext_modules=[Extension("tpxor", ["tpxor.c"], include_dirs=[tunpump.get_include()],
                           extra_compile_args=["-std=c99", "-Wall", "-Wextra", "-Werror"])],
)
