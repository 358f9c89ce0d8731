import os

import pytest

from nettest import CI, Namespaces, delete_netns, privilege_problem


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


def pytest_sessionfinish(session, exitstatus):
    # Nothing a test made may outlive the run.
    if os.path.isdir("/run/netns"):
        left = [n for n in os.listdir("/run/netns") if n.startswith(f"tpt{os.getpid() % 100000}x")]
        if left:
            stuck = [n for n in left if not delete_netns(n)]
            print(f"\nnamespaces left behind by a test: {left}; could not delete: {stuck}")
            session.exitstatus = 1
