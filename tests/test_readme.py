"""README.md's test command and .ci/run stay in sync."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```sh\n# \d\. [^\n]*\n([^\n]+)\n```", text)


def test_readme_has_two_setup_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert "python -m tunpump bench" in cmds[0]
    assert "pytest" in cmds[1] and "[test]" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    lines = [ln.strip() for ln in ci.splitlines()]
    assert _commands()[1] in lines
    assert "export CI=true" in lines
