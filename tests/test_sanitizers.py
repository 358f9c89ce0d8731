"""Build a second copy of the extension with ASan + UBSan and run the C-level
tests against it (the device ioctls, the pump, the packet parsers).

The copy lives in a temporary directory; the sanitizer runtime is preloaded
into a child pytest, since Python itself is not built with it. Both run in
the background from the end of collection on, beside the rest of the session
(tests/helpers/sanitizer.py, which also holds the list of C-level tests);
this test runs last and waits for them."""
import subprocess
import sys

from helpers.sanitizer import C_LEVEL_TESTS, run_env


def test_c_level_tests_under_asan_ubsan(sanitizer_run):
    run = sanitizer_run
    run.wait()
    build = run.build()
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert len(run.tests) == len(C_LEVEL_TESTS), \
        "a C-level test file was renamed: update C_LEVEL_TESTS"
    res = run.result()
    tail = res.stdout[-4000:] + res.stderr[-4000:]
    assert res.returncode == 0, tail
    assert "ERROR: AddressSanitizer" not in tail and "runtime error:" not in tail, tail
    # It really was the sanitized build that ran.
    check = subprocess.run([sys.executable, "-c", "import tunpump._core as c, tunpump.bench._tools as t; "
                            "print(c.__file__); print(t.__file__)"],
                           cwd=run.src, env=run_env(run.src, run.lib), capture_output=True, text=True)
    files = check.stdout.split()
    assert len(files) == 2 and all(f.startswith(run.src) for f in files), check.stdout + check.stderr
