"""Build two extensions:
  tunpump._core         the library's binding (tunpump/_core.pyx) plus csrc/{packet,os,pump}/*.c
  tunpump.bench._tools  the bench's C tools (tunpump/bench/_tools.pyx) plus csrc/tools/*.c and
                        the packet, ring and socket-address code its loops drive
Both declare the C API from tunpump/_capi.pxd.

Environment knobs (documented in README.md):
  TUNPUMP_OPT=-O3        optimisation flags (default -O2; never -march=native)
  TUNPUMP_SANITIZE=1     ASan + UBSan build (run with libasan preloaded)
  TUNPUMP_WERROR=1       warnings are errors (on by default when CI is set)
The AEAD transform (csrc/transform/tp_aead.c, in _core through its adapter
tp_aead_xf.c) uses OpenSSL 3 libcrypto when <openssl/evp.h> compiles and links
(TP_HAVE_LIBCRYPTO, -lcrypto); without it the build still succeeds and
tunpump.transforms.AEAD raises an error saying what to install.
"""
import glob
import os
import shlex

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# csrc/ is split by layer: packet/ (pure functions over buffers, no system
# I/O), os/ (devices, namespaces, socket addresses), pump/ (workers and
# endpoints), tools/ (the bench's traffic generator, never in the library).
CSRC_DIRS = ["csrc/packet", "csrc/os", "csrc/pump", "csrc/transform", "csrc/tools"]
# The public transform ABI (tunpump.h), shipped with the package: tunpump.get_include().
PUBLIC_INCLUDE = "tunpump/include"
HEADERS = sorted(f for d in CSRC_DIRS + [PUBLIC_INCLUDE] for f in glob.glob(f"{d}/*.h"))
CYTHON_DEPS = ["tunpump/_capi.pxd"] + sorted(glob.glob("tunpump/*.pxi"))


def _c(*patterns: str) -> list:
    return sorted(f for p in patterns for f in glob.glob(p))


# The C files compiled into each extension.
C_SOURCES = {
    "tunpump._core": _c("csrc/packet/*.c", "csrc/os/*.c", "csrc/pump/*.c", "csrc/transform/*.c"),
    "tunpump.bench._tools": _c("csrc/tools/*.c", "csrc/packet/*.c", "csrc/pump/tp_ring.c",
                               "csrc/os/tp_sockaddr.c", "csrc/transform/*.c"),
}
# Extensions holding the AEAD: built with libcrypto when its headers are here.
USES_LIBCRYPTO = {"tunpump._core", "tunpump.bench._tools"}
LIBCRYPTO_PROBE = """#include <openssl/evp.h>
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "OpenSSL 3 is needed"
#endif
int main(void) { EVP_CIPHER_free(EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)); return 0; }
"""


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

    _libcrypto = None

    def have_libcrypto(self):
        """OpenSSL 3's headers compile and -lcrypto links (tested once)."""
        if self._libcrypto is None:
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "probe.c")
                with open(src, "w") as f:
                    f.write(LIBCRYPTO_PROBE)
                try:
                    objs = self.compiler.compile([src], output_dir=tmp)
                    self.compiler.link_executable(objs, "probe", output_dir=tmp, libraries=["crypto"])
                    BuildExt._libcrypto = True
                except Exception:   # CompileError / LinkError: build without the AEAD
                    print("tunpump: OpenSSL 3 libcrypto headers not found (libssl-dev): the AEAD transform is unavailable")
                    BuildExt._libcrypto = False
        return self._libcrypto

    def build_extension(self, ext):
        base, link, werror = _flags()
        if ext.name in USES_LIBCRYPTO and self.have_libcrypto():
            base = base + ["-DTP_HAVE_LIBCRYPTO"]
            link = link + ["-lcrypto"]
        strict = ["-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Wformat=2"]
        if werror:
            strict.append("-Werror")
        objects = self.compiler.compile(
            C_SOURCES[ext.name], output_dir=self.build_temp, include_dirs=CSRC_DIRS + [PUBLIC_INCLUDE],
            extra_postargs=base + strict + ["-pthread"], depends=HEADERS)
        ext.extra_objects = objects
        ext.extra_compile_args = base + ["-Wall", "-Wno-unused-function",
                                         "-Wno-unused-parameter"] + (["-Werror"] if werror else [])
        ext.extra_link_args = link
        super().build_extension(ext)


extensions = [
    Extension(name, sources=[pyx], include_dirs=CSRC_DIRS + [PUBLIC_INCLUDE], depends=C_SOURCES[name] + HEADERS + CYTHON_DEPS)
    for name, pyx in (("tunpump._core", "tunpump/_core.pyx"),
                      ("tunpump.bench._tools", "tunpump/bench/_tools.pyx"))
]

setup(
    ext_modules=cythonize(extensions, language_level=3,
                          compiler_directives={"embedsignature": True}),
    cmdclass={"build_ext": BuildExt},
)
