"""The packet code's fuzz targets (tests/fuzz/): the committed seed corpus
replayed through a gcc ASan + UBSan build of the same targets (a plain main()
driver, so no clang is needed), and a short libFuzzer run of each target
through tests/fuzz/run.sh."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from helpers.nettest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "tests", "fuzz")
TARGETS = sorted(re.fullmatch(r"fuzz_(\w+)\.c", os.path.basename(f)).group(1)
                 for f in glob.glob(os.path.join(FUZZ, "fuzz_*.c")))
SAN_ENV = dict(ASAN_OPTIONS="abort_on_error=1:detect_leaks=1", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")


def _need(tool, why):
    path = shutil.which(tool)
    if path is None:
        if CI:
            pytest.fail(f"{tool} is missing ({why})")
        pytest.skip(f"no {tool} here ({why})")
    return path


def _code(target):
    """The code a target fuzzes: csrc/packet, csrc/transform with libcrypto, or
    the transform stage (csrc/pump/tp_xform.c) with the few files it needs."""
    if target.startswith("aead_"):
        t = os.path.join(ROOT, "csrc", "transform")
        return ["-DTP_HAVE_LIBCRYPTO", "-I", t, *(os.path.join(t, f) for f in ("tp_aead.c", "tp_replay.c")), "-lcrypto"]
    p = os.path.join(ROOT, "csrc", "packet")
    if target == "xform":
        pump = os.path.join(ROOT, "csrc", "pump")
        return ["-I", pump, "-I", p, "-I", os.path.join(ROOT, "tunpump", "include"),
                *(os.path.join(pump, f) for f in ("tp_xform.c", "tp_batch.c", "tp_ring.c")),
                *(os.path.join(p, f) for f in ("tp_vnet.c", "tp_csum.c", "tp_parse.c", "tp_l34.c"))]
    return ["-I", p, *sorted(glob.glob(os.path.join(p, "*.c")))]


def test_every_target_has_seeds():
    assert set(TARGETS) >= {"split", "gro", "parse", "csum", "frame", "dgram", "aead_open", "xform"}
    for t in TARGETS:
        assert len(os.listdir(os.path.join(FUZZ, "corpus", t))) >= 5, t


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_clean_under_asan_ubsan(target, tmp_path):
    gcc = _need("gcc", "the sanitizer replay build")
    exe = tmp_path / target
    cmd = [gcc, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
           "-I", FUZZ, os.path.join(FUZZ, f"fuzz_{target}.c"), os.path.join(FUZZ, "driver.c"), *_code(target),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    env = dict(os.environ, **SAN_ENV)
    env.pop("LD_PRELOAD", None)
    corpus = os.path.join(FUZZ, "corpus", target)
    res = subprocess.run([str(exe), corpus], capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Sanitizer" not in out and "runtime error" not in out and "INVARIANT" not in out, out[-4000:]
    assert f"replayed {len(os.listdir(corpus))} inputs" in res.stdout, out[-4000:]


def test_libfuzzer_short_run(tmp_path):
    """tests/fuzz/run.sh builds every target with libFuzzer and runs it (1 s
    each here; longer campaigns: tests/fuzz/run.sh 600)."""
    _need("clang", "libFuzzer builds of tests/fuzz")
    res = subprocess.run([os.path.join(FUZZ, "run.sh"), "1"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert out.count("stat::number_of_executed_units") == len(TARGETS), out[-4000:]


def _fake_fuzz_tree(tmp_path, name, body):
    """A copy of tests/fuzz with one more target, fuzz_NAME.c (its seed: "x"),
    in the layout run.sh expects (csrc/packet two levels up)."""
    _need("clang", "libFuzzer builds of tests/fuzz")
    fake = tmp_path / "fuzz"
    shutil.copytree(FUZZ, fake, ignore=shutil.ignore_patterns("corpus", "findings", "grown"))
    (fake / "corpus" / name).mkdir(parents=True)
    (fake / "corpus" / name / "seed").write_bytes(b"x")
    (fake / f"fuzz_{name}.c").write_text("#include <stdint.h>\n#include <stdlib.h>\n"
                                         f"int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {{ {body} }}\n")
    os.makedirs(tmp_path / "csrc")
    os.symlink(os.path.join(ROOT, "csrc", "packet"), tmp_path / "csrc" / "packet")
    os.makedirs(tmp_path / "tests")
    os.rename(fake, tmp_path / "tests" / "fuzz")
    return tmp_path / "tests" / "fuzz"


def test_run_sh_keeps_grown_inputs_when_asked(tmp_path):
    """KEEP_GROWN=1: inputs that reach new code land in grown/TARGET; the
    committed corpus is left as it was."""
    body = "static volatile int s; if (n > 1 && d[0] == 'a') s = d[1] == 'b' ? 2 : 1; return 0;"
    fuzz = _fake_fuzz_tree(tmp_path, "grow", body)
    res = subprocess.run([str(fuzz / "run.sh"), "3", "grow"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, KEEP_GROWN="1"))
    assert res.returncode == 0, res.stdout + res.stderr
    grown = os.listdir(fuzz / "grown" / "grow")
    assert grown and re.search(rf"{len(grown)} new input\(s\) reaching new code", res.stdout), res.stdout
    assert any((fuzz / "grown" / "grow" / f).read_bytes().startswith(b"a") for f in grown)
    assert os.listdir(fuzz / "corpus" / "grow") == ["seed"]


def test_run_sh_reports_a_finding(tmp_path):
    """A target that crashes makes run.sh exit non-zero."""
    fuzz = _fake_fuzz_tree(tmp_path, "boom", "if (n) abort(); return 0;")
    res = subprocess.run([str(fuzz / "run.sh"), "5", "boom"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FINDING in boom" in res.stderr
    assert os.listdir(tmp_path / "tests" / "fuzz" / "findings")
