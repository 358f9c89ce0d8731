# Built by tests/test_transform.py into a temporary directory, against tunpump.get_include() only.
import tunpump
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(name="xf_probe",
      ext_modules=cythonize([Extension("xf_probe", ["xf_probe.pyx"], include_dirs=[tunpump.get_include()])],
                            include_path=[tunpump.get_include()], language_level=3))
