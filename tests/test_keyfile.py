"""tunpump.keyfile: the AEAD tunnel's pre-shared key file (--key-file)."""
import base64
import os
import subprocess

import pytest

from tunpump.keyfile import KeyFileError, parse_key, read_key_file

KEY = bytes(range(100, 132))


def write(tmp_path, content, mode=0o600, name="tunnel.key"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.chmod(p, mode)
    return p


@pytest.mark.parametrize("content", [
    KEY.hex(), KEY.hex().upper(), KEY.hex() + "\n", "  \n" + KEY.hex() + " \r\n\t",
    base64.b64encode(KEY).decode(), base64.b64encode(KEY).decode() + "\n",
])
def test_accepted_forms(tmp_path, content):
    assert read_key_file(write(tmp_path, content)) == KEY


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_modes_accepted(tmp_path, mode):
    assert read_key_file(str(write(tmp_path, KEY.hex(), mode))) == KEY


@pytest.mark.parametrize("mode, what", [(0o644, "read"), (0o640, "read"), (0o604, "read"), (0o620, "write"),
                                        (0o602, "write"), (0o666, "read")])
def test_group_or_other_access_refused(tmp_path, mode, what):
    p = write(tmp_path, KEY.hex(), mode)
    with pytest.raises(KeyFileError) as e:
        read_key_file(p)
    msg = str(e.value)
    assert f"has mode {mode:04o}" in msg and f"others may {what} it" in msg
    assert f"chmod 600 {p}" in msg


def test_mode_is_that_of_the_file_a_symlink_names(tmp_path):
    target = write(tmp_path, KEY.hex(), 0o644, "real.key")
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.raises(KeyFileError, match="has mode 0644"):
        read_key_file(link)
    os.chmod(target, 0o600)
    assert read_key_file(link) == KEY


@pytest.mark.parametrize("content, match", [
    ("", "empty"),
    ("   \n", "empty"),
    (KEY.hex()[:-2], "62 hex digits, expected 64 \\(32 bytes\\)"),
    (KEY.hex() + "00", "66 hex digits, expected 64"),
    (base64.b64encode(KEY[:16]).decode(), "base64 of 16 bytes, expected 32"),
    (base64.b64encode(KEY + b"x").decode(), "base64 of 33 bytes, expected 32"),
    (base64.b64encode(KEY).decode().rstrip("="), "neither 64 hex digits nor valid base64"),
    ("not a key at all!", "more than one word"),
    ("zz" * 32, "base64 of 48 bytes, expected 32"),
    ("k!" * 32, "neither 64 hex digits nor valid base64 \\(64 characters\\)"),
    (KEY.hex() + "\n" + KEY.hex(), "more than one word"),
    (KEY, "not text"),
    (b"\xff" * 5000, "longer than 4096 bytes"),
])
def test_bad_contents(tmp_path, content, match):
    p = write(tmp_path, content)
    with pytest.raises(KeyFileError, match=match) as e:
        read_key_file(p)
    assert str(p) in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_key_file(tmp_path / "absent.key")
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises((KeyFileError, IsADirectoryError)):
        read_key_file(d)


def test_keys_made_by_the_usual_tools(tmp_path):
    """What the docs suggest (openssl rand) and wg genkey both read back."""
    p = tmp_path / "k"
    subprocess.run(f"umask 077; openssl rand -hex 32 > {p}", shell=True, check=True)
    assert len(read_key_file(p)) == 32
    wg = subprocess.run(["wg", "genkey"], capture_output=True, text=True) if os.path.exists("/usr/bin/wg") else None
    if wg is not None and wg.returncode == 0:
        q = write(tmp_path, wg.stdout, name="wg.key")
        assert read_key_file(q) == base64.b64decode(wg.stdout.strip())


def test_parse_key_names_its_source():
    assert parse_key(" " + KEY.hex() + " ") == KEY
    with pytest.raises(KeyFileError, match="^--key: 2 hex digits"):
        parse_key("ab", source="--key")
