"""File identities: what ``stat`` says of a file, to tell when it was replaced or rewritten.

Device, inode, size, modification and change times, symlinks followed: a rename over the file
(a new inode), a rewrite in place (size, times) and a symlink pointed elsewhere (certbot's
``live/`` links) all change it.
"""

from __future__ import annotations

import os

from .config import Service

FileId = tuple[int, int, int, int, int] | None  # None: it cannot be stat'ed now


def file_id(path: str) -> FileId:
    """The identity of ``path`` now."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def watched(service: Service) -> tuple[str, ...]:
    """The files ``service``'s TLS context is built from (cert, key, CAfile, CAstore), each
    once."""
    paths = (service.cert, service.key or service.cert, service.ca_file, service.ca_store)
    return tuple(dict.fromkeys(p for p in paths if p))


def file_ids(service: Service) -> tuple[FileId, ...]:
    """The identities of ``watched(service)``, in that order."""
    return tuple(file_id(path) for path in watched(service))
