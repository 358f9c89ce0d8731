"""README's command-line synopsis and the argument parser stay in sync:
every option of every subcommand is listed, and nothing listed is unknown."""
import argparse
import os
import re

from tunpump.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def synopsis():
    """{"dev add": "...", "relay": "...", ...} from README's synopsis block."""
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"## Command line\n\n```sh\n(.*?)```", text, re.S).group(1)
    out, cur = {}, None
    for line in block.splitlines():
        if line.startswith("python -m tunpump "):
            words = line.split()[3:]
            cur = " ".join(words[:2]) if words[0] == "dev" else words[0]
            out[cur] = " ".join(words[2:] if words[0] == "dev" else words[1:])
        elif line.strip():
            out[cur] += " " + line.strip()
    return out


def commands(parser, prefix=""):
    """{"dev add": subparser, ...} for every leaf subcommand."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                leaves = commands(sub, full)
                out.update(leaves or {full: sub})
    return out


def options(sub):
    return [a for a in sub._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def test_every_subcommand_is_in_the_synopsis():
    assert set(synopsis()) == set(commands(build_parser()))


def test_every_option_is_listed_and_every_listed_flag_exists():
    syn = synopsis()
    for name, sub in commands(build_parser()).items():
        listed = set(FLAG.findall(syn[name]))
        for action in options(sub):
            assert listed & set(action.option_strings), f"README synopsis of {name!r} lacks {action.option_strings}"
        known = {s for a in sub._actions for s in a.option_strings}
        assert listed <= known, f"README synopsis of {name!r} lists unknown flags {sorted(listed - known)}"


def test_the_check_catches_a_missing_flag():
    # the checker itself: a flag missing from the synopsis is caught
    syn = synopsis()
    sub = commands(build_parser())["tunnel"]
    listed = set(FLAG.findall(syn["tunnel"].replace("--no-configure", "")))
    missing = [a.option_strings for a in options(sub) if not listed & set(a.option_strings)]
    assert missing == [["--no-configure"]]
