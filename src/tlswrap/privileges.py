"""Dropping root: ``setuid``/``setgid`` after the listeners are bound and the keys are read.

The running daemon stays the dropped user, so a SIGHUP reload re-reads the config, the
certificates and the keys as that user (and its group, the only one it keeps). Files it cannot
read make that reload fail (the old configuration serves on): :func:`reread_problems` says so
at start-up, in ``tlswrap check`` and when a reload fails, with the fix (group-readable by the
``setgid`` group, mode 640).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .config import Config, Service
from .errors import TlswrapError, located


@dataclass(frozen=True)
class Identity:
    """Who the daemon becomes: ``uid`` None keeps the user, ``gid`` None the group."""

    uid: int | None
    gid: int | None

    @property
    def user(self) -> str:
        import pwd

        try:
            return pwd.getpwuid(self.uid).pw_name if self.uid is not None else "root"
        except KeyError:
            return str(self.uid)

    @property
    def group(self) -> str:
        import grp

        try:
            return grp.getgrgid(self.gid).gr_name if self.gid is not None else "root"
        except KeyError:
            return str(self.gid)


def target_identity(config: Config) -> Identity | None:
    """The ``setuid``/``setgid`` identity (a user's own group unless ``setgid`` names one);
    None when neither is set; ConfigError for a name that does not exist."""
    g = config.globals
    if g.setgid is None and g.setuid is None:
        return None
    import grp
    import pwd

    gid = uid = None
    try:
        if g.setgid is not None:
            gid = int(g.setgid) if g.setgid.isdigit() else grp.getgrnam(g.setgid).gr_gid
        if g.setuid is not None:
            pw = pwd.getpwuid(int(g.setuid)) if g.setuid.isdigit() else pwd.getpwnam(g.setuid)
            uid = pw.pw_uid
            if gid is None:
                gid = pw.pw_gid
    except KeyError as exc:
        raise config.error(f"no such user or group: {exc.args[0]}",
                           "setuid" if g.setuid else "setgid") from None
    return Identity(uid, gid)


def in_jail(config: Config, path: str) -> str:
    """Where ``path`` (a pid file, as stunnel reads it) is seen from outside a ``chroot``
    jail: the path inside the jail, under its directory. Unchanged without ``chroot``."""
    jail = config.globals.chroot
    return os.path.join(jail, path.lstrip("/")) if jail else path


# What the daemon may import after start-up (lazily, on first use): inside a jail the Python
# library is out of reach, so each is imported before entering it.
_LATE_IMPORTS = (
    "tlswrap.access", "tlswrap.execbackend", "tlswrap.proxyproto", "tlswrap.snapshot",
    "tlswrap.tlscontext", "tlswrap.opensslffi", "tlswrap.workers", "tlswrap.regularfile",
    "cryptography.x509", "cryptography.x509.oid",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.primitives.asymmetric.dsa", "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.asymmetric.ed448",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "idna", "encodings.idna", "encodings.utf_8_sig", "encodings.punycode", "pwd", "grp",
    "subprocess", "_posixsubprocess", "ipaddress", "secrets", "stat",
)


def enter_chroot(config: Config) -> None:
    """``chroot = DIR``: the process's root becomes DIR (certificates, keys and the hosts
    files were read before; ``exec`` programs and later reads are inside the jail)."""
    jail = config.globals.chroot
    if jail is None:
        return
    import importlib

    from .tcpwrappers.files import enter_jail

    for name in _LATE_IMPORTS:
        importlib.import_module(name)
    try:
        os.chroot(jail)
        os.chdir("/")
    except OSError as exc:
        raise config.error(f"chroot = {jail}: cannot enter the jail: "
                           f"{exc.strerror or exc}", "chroot") from None
    enter_jail()


def drop_privileges(config: Config) -> None:
    """chroot, then setgid/setuid, as configured; refuse to go on as root when a user was
    asked for."""
    g = config.globals
    ident = target_identity(config)  # names are looked up outside the jail
    enter_chroot(config)
    if ident is None:
        return
    try:
        if ident.gid is not None:
            os.setgroups([ident.gid])
            os.setgid(ident.gid)
        if ident.uid is not None:
            os.setuid(ident.uid)
    except PermissionError:
        raise config.error("cannot change user/group (not started as root?)",
                           "setuid" if g.setuid else "setgid") from None
    if ident.uid not in (None, 0) and (os.getuid() == 0 or os.geteuid() == 0):
        raise TlswrapError("still running as root after setuid; refusing to serve")


def reread_problems(svc: Service, ident: Identity | None) -> list[tuple[str, str]]:
    """``(option, message)`` for each file of ``svc`` that a reload re-reads (cert, key,
    CAfile, CRLfile, OCSPstaple) and ``ident`` could not read; [] when nothing is dropped or
    all is readable."""
    if ident is None or ident.uid in (None, 0):
        return []
    problems: list[tuple[str, str]] = []
    seen = set()
    files = [("cert", svc.cert), ("key", svc.key), ("CAfile", svc.ca_file),
             ("CAstore", svc.ca_store),
             ("CRLfile", svc.crl_file), ("OCSPstaple", svc.ocsp_staple_file),
             ("PSKsecrets", svc.psk_secrets)]
    for cert, key, _ in svc.more_certs:
        files += [("cert", cert), ("key", key)]
    for option, path in files:
        if not path or path in seen or _readable_by(path, ident) is not False:
            continue
        seen.add(path)
        group = ident.group
        problems.append((option, f"{option} = {path}: user {ident.user} cannot read it, so a "
                                 "SIGHUP reload will not be able to re-read it: make it "
                                 f"readable by group {group} (chgrp {group} {path}; "
                                 f"chmod 640 {path})"))
    return problems


def _readable_by(path: str, ident: Identity) -> bool | None:
    """Whether ``ident`` (keeping only its group) may read ``path`` by the mode bits of the
    file and of each directory above it (ACLs aside); None when the path cannot be judged
    (missing: the start-up error says so)."""
    try:
        target = os.path.realpath(path)
        if not _permits(os.stat(target), ident, 4):
            return False
        parent = os.path.dirname(target)
        while True:
            if not _permits(os.stat(parent), ident, 1):
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except FileNotFoundError:
        return None
    except OSError:
        return False  # as the dropped user already: stat itself was refused


def _permits(st: os.stat_result, ident: Identity, bit: int) -> bool:
    if st.st_uid == ident.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid == ident.gid:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def key_mode_warning(path: str, ident: Identity | None) -> str | None:
    """The key-file mode warning, except for the advised set-up: readable by the ``setgid``
    group and by no one else (mode 640 and the dropped group)."""
    from .tlscontext import key_file_warning

    warning = key_file_warning(path)
    if warning and ident is not None and ident.gid not in (None, 0):
        try:
            st = os.stat(path)
        except OSError:
            return warning
        if st.st_gid == ident.gid and not stat.S_IMODE(st.st_mode) & 0o007:
            return None
    return warning


def key_file_findings(svc: Service, ident: Identity | None,
                      config_file: str | None = None) -> list[tuple[str, str]]:
    """Every warning about ``svc``'s certificate and key files as ``(option, message)``: a key
    readable by others, files the dropped user could not re-read; and, given the config's
    ``config_file``, the file holding a ``protocolPassword`` readable by others."""
    found = []
    pairs = [(svc.cert, svc.key), *((c, k) for c, k, _ in svc.more_certs)]
    keys = [("key" if key else "cert", key or cert) for cert, key in pairs]
    for option, path in [*keys, ("PSKsecrets", svc.psk_secrets)]:
        warning = key_mode_warning(path, ident) if path else None
        if warning:
            found.append((option, f"{option} = {warning}"))
    if config_file is not None and svc.protocol_password is not None:
        warning = password_file_warning(located(config_file,
                                                svc.line_of("protocolPassword")), ident)
        if warning:
            found.append(("protocolPassword", warning))
    return found + reread_problems(svc, ident)


def password_file_warning(path: str, ident: Identity | None) -> str | None:
    """The warning for a config file that holds a ``protocolPassword`` and that group or
    others may read, by the rule for private keys (0600, or 0640 with the ``setgid`` group).
    A warning, not an error: stunnel takes such a file, and a mode is the owner's to set."""
    if key_mode_warning(path, ident) is None:
        return None
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return (f"protocolPassword: {path} holds a password and is readable by group/others "
            f"(mode {mode:o}); use chmod 600 {path}")
