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
    """The files ``service``'s TLS contexts are built from, each once: every cert and key
    (its secondary ``sni`` sections' too), CAfile, CAstore and CRLfile, and the CApath and
    CRLpath directories (an entry added, removed or renamed over changes a directory's
    times)."""
    paths: list[str | None] = []
    for svc in (service, *service.sni_sections):
        paths += [svc.cert, svc.key or svc.cert, svc.ca_file, svc.ca_store, svc.crl_file,
                  svc.ca_path, svc.crl_path]
        for cert, key, _ in svc.more_certs:
            paths += [cert, key or cert]
    return tuple(dict.fromkeys(p for p in paths if p))


def file_ids(service: Service) -> tuple[FileId, ...]:
    """The identities of ``watched(service)``, in that order."""
    return tuple(file_id(path) for path in watched(service))
