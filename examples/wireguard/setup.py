"""wgdata, WireGuard's data path as a tunpump transform, built outside
tunpump against its public header only (and OpenSSL 3's libcrypto):
    python setup.py build_ext --inplace"""
import tunpump
from setuptools import Extension, setup

setup(
    name="wgdata",
    version="1.0",
    description="WireGuard's transport data path for tunpump (an example transform)",
    ext_modules=[Extension("wgdata", ["wgdata.c"], include_dirs=[tunpump.get_include()], libraries=["crypto"],
                           extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror"])],
)
