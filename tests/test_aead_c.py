"""The AEAD transform's C core (csrc/transform/tp_aead.c, tp_replay.c) and
its adapter to tunpump.h (tp_aead_xf.c, tests/c/test_aead_xf.c): the
unit tests of tests/c/test_aead.c built with ASan + UBSan and -Werror, once
with OpenSSL 3 libcrypto (known answers, round trips, sealing from two
pieces at every split, drop reasons, rekey, counter exhaustion) and once as
a build without libcrypto headers sees it (a poisoned <openssl/evp.h> first
on the include path): the AEAD then says it is unavailable and names the
package to install."""
import os
import re
import subprocess

import pytest

from helpers.csan import build_and_run, sanitizer_gcc
from helpers.nettest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSFORM = os.path.join(ROOT, "csrc", "transform")
# The AEAD alone (the other built-in transforms need the public tunpump.h).
AEAD_SOURCES = [os.path.join(TRANSFORM, f) for f in ("tp_aead.c", "tp_replay.c")]


def _have_libcrypto_headers(gcc, tmp_path):
    src = tmp_path / "probe.c"
    src.write_text("#include <openssl/evp.h>\nint main(void) { EVP_CIPHER_CTX_free(EVP_CIPHER_CTX_new()); }\n")
    return subprocess.run([gcc, str(src), "-lcrypto", "-o", str(tmp_path / "probe")],
                          capture_output=True).returncode == 0


def _build_and_run(gcc, tmp_path, extra, test="test_aead.c"):
    return build_and_run(gcc, tmp_path / test[:-2], [*extra[0], "-I", TRANSFORM, os.path.join(ROOT, "tests", "c", test),
                                                      *AEAD_SOURCES, *extra[1]])


def test_aead_unit_tests_with_libcrypto(tmp_path):
    gcc = sanitizer_gcc()
    if not _have_libcrypto_headers(gcc, tmp_path):
        if CI:
            pytest.fail("OpenSSL 3 libcrypto headers are missing (apt-get install libssl-dev)")
        pytest.skip("no OpenSSL libcrypto headers here (libssl-dev)")
    assert _build_and_run(gcc, tmp_path, (["-DTP_HAVE_LIBCRYPTO"], ["-lcrypto"])) > 20000


def test_aead_transform_adapter(tmp_path):
    """tests/c/test_aead_xf.c: the adapter through its tunpump.h ops (seal from
    the packet's read-only pieces into out, open in the hook's room, each drop
    reason, rekey by control message)."""
    gcc = sanitizer_gcc()
    if not _have_libcrypto_headers(gcc, tmp_path):
        if CI:
            pytest.fail("OpenSSL 3 libcrypto headers are missing (apt-get install libssl-dev)")
        pytest.skip("no OpenSSL libcrypto headers here (libssl-dev)")
    assert _build_and_run(gcc, tmp_path, (["-DTP_HAVE_LIBCRYPTO", "-I", os.path.join(ROOT, "tunpump", "include")],
                                          [os.path.join(TRANSFORM, "tp_aead_xf.c"), "-lcrypto"]),
                          test="test_aead_xf.c") > 30


def test_aead_without_libcrypto_says_unavailable(tmp_path):
    gcc = sanitizer_gcc()
    poison = tmp_path / "poison" / "openssl"
    poison.mkdir(parents=True)
    for h in ("evp.h", "crypto.h"):
        (poison / h).write_text('#error "poisoned: a build without libcrypto headers must not include this"\n')
    assert _build_and_run(gcc, tmp_path, (["-I", str(tmp_path / "poison")], [])) > 10000


def test_seal_and_open_allocate_nothing_per_packet(tmp_path):
    """The whole process's malloc/realloc count (libcrypto's included, through
    an LD_PRELOAD counter) is the same for 10 and for 20,000 packets."""
    gcc = sanitizer_gcc()
    if not _have_libcrypto_headers(gcc, tmp_path):
        if CI:
            pytest.fail("OpenSSL 3 libcrypto headers are missing (apt-get install libssl-dev)")
        pytest.skip("no OpenSSL libcrypto headers here (libssl-dev)")
    shim, exe = tmp_path / "count_malloc.so", tmp_path / "test_aead_plain"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", os.path.join(ROOT, "tests", "c", "count_malloc.c"),
                    "-o", str(shim), "-ldl"], check=True, capture_output=True, timeout=120)
    subprocess.run([gcc, "-std=gnu11", "-O2", "-DTP_HAVE_LIBCRYPTO", "-I", TRANSFORM,
                    os.path.join(ROOT, "tests", "c", "test_aead.c"), *AEAD_SOURCES,
                    "-lcrypto", "-o", str(exe)], check=True, capture_output=True, timeout=120)
    counts = []
    for n in (10, 20000):
        env = dict(os.environ, LD_PRELOAD=str(shim))
        res = subprocess.run([str(exe), "allocs", str(n)], capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0 and f"opened {2 * n}" in res.stdout, res.stdout + res.stderr
        counts.append(int(re.search(r"allocations (\d+)", res.stderr).group(1)))
    assert counts[0] > 0 and counts[0] == counts[1], counts
