"""Reading a file named in a config without ever blocking on it.

A FIFO or a device where a certificate, a hosts file or a banner should be would block the
reader forever (or never end); ``read_regular`` opens without blocking, refuses anything but a
regular file, and reads at most ``limit`` bytes.
"""

from __future__ import annotations

import errno
import os
import stat

HOSTS_MAX_BYTES = 1 << 20  # a hosts file, a /path pattern list or a banner: at most 1 MiB

_IRREGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def irregular_kind(mode: int) -> str | None:
    """What a file of ``mode`` is, if reading it could block or never end ("a FIFO", "a
    character device", ...); None for a regular file or a directory (reading a directory
    fails at once, with the OS's "Is a directory")."""
    return next((kind for test, kind in _IRREGULAR if test(mode)), None)


def read_regular(path: str, limit: int) -> bytes:
    """The contents of the regular file ``path``, at most ``limit`` bytes, without blocking.

    OSError otherwise, its ``strerror`` saying why ("not a regular file (a FIFO)", "larger
    than 16 MiB", the OS's reason); ValueError for a NUL in the path.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        kind = irregular_kind(os.fstat(fd).st_mode)
        if kind:
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", path)
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise OSError(errno.EFBIG, f"larger than {_size(limit)}", path)
    return b"".join(chunks)


def read_regular_text(path: str, limit: int) -> str:
    """``read_regular`` as text: UTF-8, undecodable bytes kept as surrogates (as tcpd reads
    bytes), line ends untouched."""
    return read_regular(path, limit).decode("utf-8", "surrogateescape")


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def read_include_dir(directory: str, limit: int) -> list[tuple[str, str]]:
    """``include = DIR`` as stunnel reads it: every regular file in DIR (symbolic links
    followed), in name order, each read as the config is. ValueError says what failed."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ValueError(f"cannot read the directory: {exc.strerror or exc}") from None
    files = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue  # as stunnel: directories, sockets... are skipped
            data = read_regular(path, limit)
            files.append((path, data.decode("utf-8-sig")))
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text: {exc.reason}") from None
    return files
