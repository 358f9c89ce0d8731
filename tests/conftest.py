import os
import signal

import pytest

from helpers.nettest import CI, Namespaces, delete_netns, namespace_prefix, privilege_problem
from helpers.extbuild import built_extension
from helpers.fakedev import Rig
from helpers.sanitizer import SanitizerRun, libasan
from helpers.world import World

# A suite started in the background of a non-interactive shell (`.ci/run &`)
# has SIGINT ignored, and every process it starts inherits that: the tests
# that stop a child with SIGINT (Ctrl-C) would then wait for nothing. With a
# handler here, children start with SIGINT's default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def privileged():
    """Skip when root, /dev/net/tun or namespaces are missing; under CI
    (CI=true, set by .ci/run) fail instead, so green means these tests ran."""
    problem = privilege_problem()
    if problem:
        if CI:
            pytest.fail(f"CI requires privileged tests to run: {problem}")
        pytest.skip(problem)


@pytest.fixture
def ns(privileged):
    """Namespaces and processes made for one test, removed even on failure."""
    n = Namespaces()
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def world(request, ns):
    """The pump tests' World (tests/helpers/world.py), removed even on
    failure. Other shapes through indirect parametrization:
    @pytest.mark.parametrize("world", [{"queues": 2}], indirect=True)."""
    w = World(ns, **getattr(request, "param", {}))
    try:
        yield w
    finally:
        w.close()


_SANITIZER_RUN = pytest.StashKey()


def pytest_collection_modifyitems(items):
    # The sanitizer run works in the background from collection on
    # (helpers/sanitizer.py); its test waits for it, so it goes last.
    items.sort(key=lambda item: "sanitizer_run" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session):
    """Start the sanitizer run now if its test will run and can (root and
    libasan; else the test skips, or fails under CI, as it says why)."""
    opt = session.config.option
    if opt.collectonly or getattr(opt, "setupplan", False):
        return
    if any("sanitizer_run" in getattr(item, "fixturenames", ()) for item in session.items):
        lib = libasan()
        if lib is not None and privilege_problem() is None:
            session.config.stash[_SANITIZER_RUN] = SanitizerRun(lib)


@pytest.fixture
def sanitizer_run(request, privileged):
    """The sanitizer run started at collection (helpers/sanitizer.py)."""
    lib = libasan()
    if lib is None:
        if CI:
            pytest.fail("libasan is missing (install gcc's sanitizer runtime)")
        pytest.skip("gcc has no libasan here")
    run = request.config.stash.get(_SANITIZER_RUN, None)
    if run is None:     # started some other way than a normal session: start it now
        run = request.config.stash[_SANITIZER_RUN] = SanitizerRun(lib)
    return run


@pytest.fixture(scope="session")
def probe(tmp_path_factory):
    """tests/helpers/xf_probe, the test transform, built once (a second
    build would import as the first: same module name) in a temporary
    directory with this Python, seeing only tunpump's public headers."""
    with built_extension(os.path.join(os.path.dirname(__file__), "helpers", "xf_probe"),
                         ("xf_probe.pyx", "setup.py"), tmp_path_factory.mktemp("xf_probe"), "xf_probe") as mod:
        yield mod


@pytest.fixture(params=["fake", "real"])
def rig(request):
    """Two devices and the stacks behind them: fake devices (socketpairs, no
    root needed) or real ones in namespaces. One test body runs on both."""
    if request.param == "real" or privilege_problem() is None:
        ns = request.getfixturevalue("ns")   # real: skips (fails under CI) without the privilege
    else:
        ns = None
    r = Rig(request.param, ns)
    try:
        yield r
    finally:
        r.close()


def pytest_sessionfinish(session, exitstatus):
    # Nothing a test made may outlive the run.
    run = session.config.stash.get(_SANITIZER_RUN, None)
    if run is not None:
        run.stop()     # ended early (Ctrl-C, -x): stop it; else remove its copy
    if os.path.isdir("/run/netns"):
        left = [n for n in os.listdir("/run/netns") if n.startswith(namespace_prefix(os.getpid()))]
        if left:
            stuck = [n for n in left if not delete_netns(n)]
            print(f"\nnamespaces left behind by a test: {left}; could not delete: {stuck}")
            session.exitstatus = 1


@pytest.fixture(autouse=True)
def _tunpump_logger_restored():
    """A test that runs the CLI in-process (cli.main) configures the
    "tunpump" logger for a terminal (own handler, no propagation); put it
    back so later tests' caplog still sees the library's records."""
    import logging
    log = logging.getLogger("tunpump")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


@pytest.fixture
def tun_node():
    """A private clone node with the usual 0666 mode (/dev/net/tun is 0600 on
    some machines, this one included), so an unprivileged process can open it
    without touching /dev, as non-root users of tunpump need (see README). It
    sits in its own directory under /tmp, which that process can traverse."""
    import shutil
    import stat
    import tempfile
    d = tempfile.mkdtemp(prefix="tunpump-")
    os.chmod(d, 0o755)
    node = os.path.join(d, "tun")
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    os.chmod(node, 0o666)
    yield node
    shutil.rmtree(d)
