"""The ``wrapcert`` commands. Each takes the parsed arguments and the three standard streams and
returns the exit status; user mistakes are raised as :class:`TlswrapError`.

:mod:`tlswrap.wrapcert.cli` parses the command line and looks the command up in
:data:`COMMANDS`; nothing here imports the CLI back.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
from collections.abc import Callable
from typing import TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert import build, x509text
from tlswrap.wrapcert.extconf import ExtSpec, SanNames
from tlswrap.wrapcert.files import (
    check_writable,
    find_private_key,
    read_bytes,
    same_file,
    write_atomic,
)
from tlswrap.wrapcert.request import ReqOptions, Resolved, input_files, resolve

__all__ = [
    "CHECK_EXPIRING",
    "CHECK_INVALID",
    "CHECK_OK",
    "CHECK_UNREADABLE",
    "COMMANDS",
    "check_certificate",
]

# Exit statuses of 'wrapcert check', as its --help says; the CLI uses CHECK_UNREADABLE when a
# file cannot be read.
CHECK_OK, CHECK_EXPIRING, CHECK_INVALID, CHECK_UNREADABLE = 0, 1, 2, 3

PEM = serialization.Encoding.PEM
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
KEY_MODE, CERT_MODE = 0o600, 0o644

Command = Callable[[argparse.Namespace, TextIO, TextIO, TextIO], int]


def _opts(args: argparse.Namespace) -> ReqOptions:
    """The request options of ``new``, ``csr``, ``ca new`` and ``issue``."""
    return ReqOptions(
        config=args.config, days=args.days, out=args.out, keyout=args.keyout, subj=args.subj,
        newkey=args.newkey, pkeyopt=args.pkeyopt, nodes=args.nodes, batch=args.batch,
        san=args.san, addext=args.addext, key=args.key, md=args.md, force=args.force,
        extensions=args.extensions,
    )  # fmt: skip


def _load_cert(path: str) -> x509.Certificate:
    der = x509text.load_certificates(read_bytes(path), path)[0]
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise TlswrapError(f"{path}: cannot read the certificate: {exc}") from None


def _existing_key(path: str) -> build.PrivateKey:
    return build.checked_key(find_private_key(read_bytes(path), path), path)


def _with_san(
    specs: list[ExtSpec], san: SanNames | None, name: x509.Name, stderr: TextIO
) -> list[ExtSpec]:
    """Apply --san, or add a SAN from the CN when the extensions have none."""
    if san is not None:
        specs = [s for s in specs if s.name != "subjectAltName"]
        return [*specs, ExtSpec("subjectAltName", False, san, "--san", None)]
    if any(s.name == "subjectAltName" for s in specs):
        return specs
    auto = build.auto_san(name)
    if not auto:
        stderr.write(
            "wrapcert: warning: no subjectAltName: the Common Name is not a host name or address, "
            "and clients match host names against the SAN only; give --san DNS:name\n"
        )
        return specs
    return [*specs, ExtSpec("subjectAltName", False, tuple(auto), "<CN>", None)]


def _with_ski(specs: list[ExtSpec]) -> list[ExtSpec]:
    if any(s.name == "subjectKeyIdentifier" for s in specs):
        return specs
    return [*specs, ExtSpec("subjectKeyIdentifier", False, "hash", "<default>", None)]


def _outputs(
    out: str | None, keyout: str | None, force: bool, what: str
) -> tuple[str, str | None, bool]:
    if out is None:
        raise TlswrapError(f"-out FILE is required (where the {what} goes)")
    if keyout is None or same_file(keyout, out):
        check_writable([out], force)
        return out, keyout, True
    check_writable([out, keyout], force)
    return out, keyout, False


def _check_overwrites(
    inputs: list[tuple[str, str | None]],
    out: str,
    keyout: str | None,
    combined: bool,
    key_written: bool,
) -> None:
    """Every input file against every output file, before anything is written.

    An output may be an input only when it is the ``-key`` file and the key is written back into
    it: a combined PEM renewed in place (``-key server.pem -out server.pem``), or ``-keyout``
    naming the file the key came from. Any other would replace what was read (the key, a CA, the
    config) with something else, so it is refused.
    """
    outputs = [("-out", out, combined and key_written)]
    if keyout is not None and not combined:
        outputs.append(("-keyout", keyout, key_written))
    for out_flag, target, holds_key in outputs:
        for in_flag, source in inputs:
            if source is None or not same_file(source, target):
                continue
            if in_flag == "-key" and holds_key:
                continue
            raise TlswrapError(
                f"{out_flag} {target} is also the {in_flag} file: writing it would replace an "
                f"input; give another {out_flag} file"
            )


def _write(
    out: str, keyout: str | None, combined: bool, key_pem: bytes | None, body: bytes, force: bool
) -> list[str]:
    """Write key (if any) and certificate, together when *combined*; returns lines saying what
    went where."""
    if key_pem is None:
        write_atomic(out, body, CERT_MODE, force)
        return [f"certificate: {out}"]
    if combined:
        write_atomic(out, key_pem + body, KEY_MODE, force)
        return [f"key and certificate: {out} (mode 0600)"]
    assert keyout is not None
    write_atomic(keyout, key_pem, KEY_MODE, force)
    write_atomic(out, body, CERT_MODE, force)
    return [f"key: {keyout} (mode 0600)", f"certificate: {out}"]


def _summary(cert: x509.Certificate, where: list[str]) -> str:
    text = x509text.show(cert.public_bytes(serialization.Encoding.DER), "sha256")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ", ".join(":".join(_gn(n)) for n in san)
    except x509.ExtensionNotFound:
        names = "(none)"
    lines = [
        f"key type: {build.key_description(cert.public_key())}",
        f"subjectAltName: {names}",
        *where,
    ]
    return text + "".join(line + "\n" for line in lines)


_GN_KINDS: dict[type[x509.GeneralName], str] = {
    x509.DNSName: "DNS",
    x509.IPAddress: "IP",
    x509.RFC822Name: "email",
    x509.UniformResourceIdentifier: "URI",
}


def _gn(name: x509.GeneralName) -> tuple[str, str]:
    """``("DNS", "x")``, ``("IP", "1.2.3.4")``, ...: kind and value as in the config syntax."""
    if isinstance(name, x509.RegisteredID):
        return "RID", name.value.dotted_string
    if isinstance(name, x509.DirectoryName):
        return "dirName", name.value.rfc4514_string()
    return _GN_KINDS.get(type(name), "otherName"), str(name.value)


def _digest(opts: ReqOptions, r: Resolved) -> str | None:
    """-sha256/-sha384/-sha512, else the config's default_md; None: the builder's default."""
    return opts.md or (r.settings.md if r.settings else None)


def _key_for(r: Resolved, opts: ReqOptions) -> tuple[build.PrivateKey, bool]:
    """(private key, whether it is new)."""
    if opts.key is not None:
        return _existing_key(opts.key), False
    return build.generate_key(r.key_spec), True


def cmd_new(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    opts = _opts(args)
    r = resolve(opts, stdin, stderr)
    keyout = opts.keyout or (r.settings.default_keyfile if r.settings else None)
    if opts.key is not None and opts.keyout is None:
        # the key stays where it is; unless that is where the certificate goes: a combined PEM
        # renewed in place keeps its key (stunnel reads both from the one file)
        keyout = opts.out if opts.out is not None and same_file(opts.key, opts.out) else None
    out, keyout, combined = _outputs(opts.out, keyout, opts.force, "certificate")
    _check_overwrites(input_files(opts), out, keyout, combined, opts.key is None or bool(keyout))
    key, new_key = _key_for(r, opts)
    name = build.make_name(r.subject)
    specs = build.server_extensions(key, []) if r.extensions is None else _with_ski(r.extensions)
    specs = _with_san(specs, r.san, name, stderr)
    md = _digest(opts, r)
    cert = build.issue(key.public_key(), name, key, name, specs, opts.days or 365, md)
    key_pem = build.key_pem(key) if new_key or keyout else None
    where = _write(out, keyout, combined, key_pem, cert.public_bytes(PEM), opts.force)
    stdout.write(_summary(cert, where))
    return 0


def cmd_csr(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    opts = _opts(args)
    r = resolve(opts, stdin, stderr, for_csr=True)
    keyout = opts.keyout or (r.settings.default_keyfile if r.settings else None)
    if opts.key is None and keyout is None:
        raise TlswrapError(
            "-keyout FILE is required: the key stays here, the request goes to the CA"
        )
    if opts.key is not None:
        keyout = opts.keyout
    out, keyout, combined = _outputs(opts.out, keyout, opts.force, "request")
    _check_overwrites(input_files(opts), out, keyout, combined, keyout is not None)
    key, _ = _key_for(r, opts)
    name = build.make_name(r.subject)
    specs = _with_san(list(r.extensions or []), r.san, name, stderr)
    md = _digest(opts, r)
    req = build.build_csr(key, name, specs, md)
    key_pem = build.key_pem(key) if keyout is not None else None
    where = _write(out, keyout, combined, key_pem, req.public_bytes(PEM), opts.force)
    stdout.write(f"subject={x509text.format_name(_name_content(req.subject))}\n")
    stdout.write(f"key type: {build.key_description(key)}\n" + "".join(w + "\n" for w in where))
    return 0


def _name_content(name: x509.Name) -> bytes:
    return x509text.read_tlv(name.public_bytes())[1]


def cmd_ca_new(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    opts = _opts(args)
    if opts.newkey is None and opts.key is None and not opts.pkeyopt:
        opts.newkey = "ec:P-256"
    r = resolve(opts, stdin, stderr)
    if opts.keyout is None or (opts.out is not None and same_file(opts.keyout, opts.out)):
        raise TlswrapError(
            "a CA keeps its key apart from the certificate it hands out: give --key-out FILE"
        )
    out, keyout, _ = _outputs(opts.out, opts.keyout, opts.force, "CA certificate")
    _check_overwrites(input_files(opts), out, keyout, False, True)
    key, _ = _key_for(r, opts)
    name = build.make_name(r.subject)
    specs = build.ca_extensions() if r.extensions is None else _with_ski(r.extensions)
    md = _digest(opts, r)
    cert = build.issue(key.public_key(), name, key, name, specs, opts.days or 3650, md)
    where = _write(out, keyout, False, build.key_pem(key), cert.public_bytes(PEM), opts.force)
    stdout.write(_summary(cert, where))
    return 0


def cmd_issue(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    opts = _opts(args)
    ca_cert = _load_cert(args.ca)
    ca_key_path = args.ca_key or args.ca
    found = find_private_key(read_bytes(ca_key_path), ca_key_path)
    if _spki(found) != _spki(ca_cert):
        raise TlswrapError(f"{ca_key_path}: the key does not match the CA certificate {args.ca}")
    ca_key = build.checked_ca_key(found, ca_key_path)
    try:
        if not ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise x509.ExtensionNotFound("", x509.BasicConstraints.oid)
    except x509.ExtensionNotFound:
        raise TlswrapError(
            f"{args.ca}: not a CA certificate (basicConstraints CA:TRUE missing)"
        ) from None
    csr = None
    if args.csr:
        try:
            csr = x509.load_pem_x509_csr(read_bytes(args.csr))
        except ValueError as exc:
            raise TlswrapError(f"{args.csr}: cannot read the request: {exc}") from None
        if not csr.is_signature_valid:
            raise TlswrapError(f"{args.csr}: the request's signature does not verify")
    r = resolve(opts, stdin, stderr, need_subject=csr is None or opts.subj is not None)
    keyout = None if csr is not None else opts.keyout
    out, keyout, combined = _outputs(opts.out, keyout, opts.force, "certificate")
    inputs = [*input_files(opts), ("--ca", args.ca), ("--ca-key", args.ca_key), ("--csr", args.csr)]
    _check_overwrites(inputs, out, keyout, combined, csr is None)
    if csr is not None:
        public, key_pem = csr.public_key(), None
        name = build.make_name(r.subject) if r.subject else csr.subject
        san = r.san
        if san is None:
            try:
                ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                san = tuple(_gn(n) for n in ext)
                if any(kind not in ("DNS", "IP", "email", "URI", "RID") for kind, _ in san):
                    raise TlswrapError(
                        f"{args.csr}: the request's subjectAltName has names wrapcert cannot copy"
                    )
            except x509.ExtensionNotFound:
                san = None
    else:
        key, _ = _key_for(r, opts)
        public, key_pem, san = key.public_key(), build.key_pem(key), r.san
        name = build.make_name(r.subject)
    if (reason := build.weak_key_reason(public)) is not None:
        raise TlswrapError(reason)
    specs = build.server_extensions(public, []) if r.extensions is None else _with_ski(r.extensions)
    specs = _with_san(specs, san, name, stderr)
    if not any(s.name == "authorityKeyIdentifier" for s in specs):
        specs.append(ExtSpec("authorityKeyIdentifier", False, ("", None), "<default>", None))
    md = _digest(opts, r)
    cert = build.issue(public, name, ca_key, ca_cert.subject, specs, opts.days or 365, md)
    body = cert.public_bytes(PEM) + (ca_cert.public_bytes(PEM) if args.chain else b"")
    where = _write(out, keyout, combined, key_pem, body, opts.force)
    stdout.write(_summary(cert, where))
    return 0


def cmd_show(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    digest = args.digest or "sha1"
    label = "SHA1" if args.digest is None else args.digest  # as openssl: "-sha256" -> "sha256"
    paths = args.files + args.infiles
    if not paths:
        raise TlswrapError("show: give at least one certificate file")
    for path in paths:
        certs = x509text.load_certificates(read_bytes(path), path)
        for der in certs if args.all else certs[:1]:
            try:
                stdout.write(x509text.show(der, digest, label))
            except x509text.DERError as exc:
                raise TlswrapError(f"{path}: {exc}") from None
    return 0


def _spki(holder: x509.Certificate | PrivateKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate or of a private key's public half."""
    return holder.public_key().public_bytes(serialization.Encoding.DER, SPKI)


def check_certificate(
    cert: x509.Certificate, key: PrivateKeyTypes | None, days: int, now: datetime.datetime
) -> tuple[int, str]:
    """(exit status, one-line reason) for ``wrapcert check``."""
    if now < cert.not_valid_before_utc:
        return (
            CHECK_INVALID,
            f"not yet valid: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
        )
    if now > cert.not_valid_after_utc:
        return CHECK_INVALID, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if (reason := build.weak_key_reason(cert.public_key())) is not None:
        return CHECK_INVALID, reason
    if key is not None and _spki(key) != _spki(cert):
        return CHECK_INVALID, "key does not match the certificate"
    try:
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return (
            CHECK_INVALID,
            "no SAN: clients ignore the Common Name and will reject this certificate",
        )
    left = cert.not_valid_after_utc - now
    whole = left.days
    until = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if left.total_seconds() <= days * 86400:  # a timedelta of any --days would overflow
        return CHECK_EXPIRING, f"expiring in {whole} days (on {until})"
    return CHECK_OK, f"valid for {whole} more days (until {until})"


def cmd_check(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    cert = _load_cert(args.file)
    key: PrivateKeyTypes | None
    if args.key:
        key = find_private_key(read_bytes(args.key), args.key)
    else:
        key = find_private_key(read_bytes(args.file), args.file, required=False)
    status, reason = check_certificate(cert, key, args.days, datetime.datetime.now(datetime.UTC))
    (stdout if status == CHECK_OK else stderr).write(f"{args.file}: {reason}\n")
    return status


def cmd_tlsa(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    der = x509text.load_certificates(read_bytes(args.file), args.file)[0]
    digest = hashlib.sha256(x509text.parse_certificate(der).spki).hexdigest()
    if args.host is None and args.port is None:
        stdout.write(f"3 1 1 {digest}\n")
        return 0
    if args.host is None or args.port is None:
        raise TlswrapError("give both --port and --host (or neither, for the bare record data)")
    if not 0 < args.port < 65536:
        raise TlswrapError(f"--port {args.port}: not a port number")
    host = args.host if args.host.endswith(".") else args.host + "."
    stdout.write(f"_{args.port}._{args.proto}.{host} IN TLSA 3 1 1 {digest}\n")
    return 0


COMMANDS: dict[str, Command] = {
    "new": cmd_new,
    "csr": cmd_csr,
    "show": cmd_show,
    "check": cmd_check,
    "ca": cmd_ca_new,
    "issue": cmd_issue,
    "tlsa": cmd_tlsa,
}
