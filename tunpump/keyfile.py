"""The pre-shared key of an AEAD tunnel, read from a file
(`tunpump tunnel --key-file FILE`).

The file holds one 32-byte key as 64 hex digits or as base64 (44 characters,
as `wg genkey` and `openssl rand -base64 32` print it); whitespace around it
is ignored. Like ssh and wg, it is refused when group or others may read or
write it: a key others can read is no longer secret.

Make one with:  (umask 077; openssl rand -hex 32 > tunnel.key)
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import stat

KEY_LEN = 32
_MAX_FILE = 4096          # a key file is one line; anything this long is the wrong file
_HEX = re.compile(r"[0-9a-fA-F]+")


class KeyFileError(ValueError):
    """The key file's permissions or contents are wrong; the message says how."""


def read_key_file(path: str | os.PathLike) -> bytes:
    """The 32-byte key in the file at path.

    Raises KeyFileError when the file is readable or writable by group or
    others (the message names the mode and the fix, chmod 600), is not a
    regular file, or does not hold exactly one 32-byte key in hex or base64;
    OSError (FileNotFoundError, PermissionError) when it cannot be opened."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)          # the mode of the file actually opened, not of a path re-resolved
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {name}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {name} has mode {mode:04o}: group or others may "
                f"{'read' if mode & 0o044 else 'write'} it; a pre-shared key must be private to its "
                f"owner (fix: chmod 600 {name})")
        data = os.read(fd, _MAX_FILE + 1)
    finally:
        os.close(fd)
    return parse_key(data, source=f"key file {name}")


def parse_key(data: bytes | str, source: str = "key") -> bytes:
    """A 32-byte key from 64 hex digits or base64 of 32 bytes (surrounding
    whitespace ignored). KeyFileError naming source when it is anything else."""
    if isinstance(data, bytes):
        if len(data) > _MAX_FILE:
            raise KeyFileError(f"{source}: longer than {_MAX_FILE} bytes; expected one 32-byte key")
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError(f"{source}: not text; expected 64 hex digits or base64 of 32 bytes "
                               f"(a binary key can be converted with: xxd -p -c 32)") from None
    text = data.strip()
    if not text:
        raise KeyFileError(f"{source}: empty; expected 64 hex digits or base64 of 32 bytes")
    if any(c.isspace() for c in text):
        raise KeyFileError(f"{source}: more than one word; expected one key (64 hex digits or base64 of 32 bytes)")
    if _HEX.fullmatch(text):
        if len(text) != 2 * KEY_LEN:
            raise KeyFileError(f"{source}: {len(text)} hex digits, expected {2 * KEY_LEN} ({KEY_LEN} bytes)")
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{source}: neither {2 * KEY_LEN} hex digits nor valid base64 "
                           f"({len(text)} characters)") from None
    if len(key) != KEY_LEN:
        raise KeyFileError(f"{source}: base64 of {len(key)} bytes, expected {KEY_LEN} "
                           f"(44 characters ending in '=')")
    return key
