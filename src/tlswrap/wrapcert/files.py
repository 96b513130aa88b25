"""Reading and writing key and certificate files.

A private key is never readable by others, not even for an instant: the data goes to a new file
created ``O_CREAT | O_EXCL`` with mode 0600 in the target's directory, is flushed to disk, and
only then takes the target's name (``link`` when the target must not exist, so a file that
appeared meanwhile is never clobbered; ``rename`` with ``--force``), and the directory is flushed
too. A reader of the old file never sees half a new one, and a crash leaves the old one whole.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import TYPE_CHECKING, Literal, overload

from tlswrap.errors import TlswrapError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["check_writable", "find_private_key", "read_bytes", "same_file", "write_atomic"]

_KEY_RE = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----\r?\n?", re.S
)


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlswrapError(f"{path}: {exc.strerror}") from None


def same_file(a: str, b: str) -> bool:
    """Whether *a* and *b* name one file: the same inode when both exist (hard links, symbolic
    links, ``./x`` and ``x``), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_writable(paths: list[str], force: bool) -> None:
    """Fail before any work if a target exists (without *force*) or its directory is missing."""
    for path in paths:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise TlswrapError(f"{path}: directory {directory} does not exist")
        if os.path.lexists(path) and not force:
            raise TlswrapError(f"{path} exists; not overwriting it without --force")
        if os.path.isdir(path):
            raise TlswrapError(f"{path} is a directory")


def write_atomic(path: str, data: bytes, mode: int, force: bool) -> None:
    """Write *data* to *path* created with *mode* (e.g. 0o600 for anything holding a key)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise TlswrapError(f"{path}: cannot create a file in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise TlswrapError(f"{path} exists; not overwriting it without --force") from None
            os.unlink(tmp)
        _fsync_directory(directory)
    except OSError as exc:
        raise TlswrapError(f"{path}: {exc.strerror}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _fsync_directory(directory: str) -> None:
    """Make the new name durable (the rename is an entry of the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@overload
def find_private_key(
    data: bytes, source: str, required: Literal[True] = True
) -> PrivateKeyTypes: ...
@overload
def find_private_key(data: bytes, source: str, required: bool) -> PrivateKeyTypes | None: ...
def find_private_key(data: bytes, source: str, required: bool = True) -> PrivateKeyTypes | None:
    """The first private key in PEM *data* (or DER PKCS#8), loaded; None if absent and optional."""
    from cryptography.hazmat.primitives import serialization

    match = _KEY_RE.search(data)
    if match is None:
        try:
            return serialization.load_der_private_key(data, None)
        except (ValueError, TypeError):
            if required:
                raise TlswrapError(f"{source}: no private key found") from None
            return None
    if match.group(1) == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in match.group(0):
        raise TlswrapError(f"{source}: the private key is encrypted; decrypt it first")
    try:
        return serialization.load_pem_private_key(match.group(0), None)
    except (ValueError, TypeError) as exc:
        raise TlswrapError(f"{source}: cannot read the private key: {exc}") from None
