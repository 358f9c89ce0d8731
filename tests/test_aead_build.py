"""setup.py without OpenSSL's headers: the build still succeeds and the AEAD
says it is unavailable, naming what to install. A copy of the tree is built
with a poisoned <openssl/evp.h> first on the compiler's include path (CPATH),
as on a machine without libssl-dev."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_without_libcrypto_headers(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "*.so", "*.egg-info", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "_core.c", "_tools.c"))
    poison = tmp_path / "poison" / "openssl"
    poison.mkdir(parents=True)
    (poison / "evp.h").write_text('#error "poisoned: no OpenSSL headers on this machine"\n')
    env = dict(os.environ, CPATH=str(tmp_path / "poison"), TUNPUMP_WERROR="1", TUNPUMP_OPT="-O0")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src, env=env,
                           capture_output=True, text=True, timeout=900)
    out = build.stdout + build.stderr
    assert build.returncode == 0, out[-4000:]
    assert "OpenSSL 3 libcrypto headers not found (libssl-dev): the AEAD transform is unavailable" in out
    assert "-DTP_HAVE_LIBCRYPTO" not in out and "-lcrypto" not in out, out[-4000:]
    check = subprocess.run([sys.executable, "-c", """
import tunpump.bench._tools as t
print(t.__file__)
print(t.aead_available())
try:
    t.Aead("aes-256-gcm", 0, 1)
except RuntimeError as e:
    print("RuntimeError:", e)
from tunpump import transforms
try:
    transforms.AEAD(bytes(32))
except transforms.AEADUnavailable as e:
    print("AEADUnavailable:", e)
"""], cwd=src, env=dict(os.environ, PYTHONPATH=str(src)), capture_output=True, text=True, timeout=60)
    lines = check.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith(str(src)), check.stdout + check.stderr
    assert lines[1] == "False"
    assert lines[2].startswith("RuntimeError: tunpump was built without OpenSSL 3 libcrypto headers")
    assert "apt-get install libssl-dev" in lines[2]
    # the library's AEAD transform (in _core) says the same, before any pump is made
    assert lines[3].startswith("AEADUnavailable: the AEAD transform needs OpenSSL 3 libcrypto, and tunpump was "
                               "built without OpenSSL 3 libcrypto headers"), lines[3]
    assert "apt-get install libssl-dev" in lines[3]
