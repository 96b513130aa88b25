"""From command-line options and config to a key spec, a subject and extensions.

Shared by ``new``, ``csr`` and ``issue``. The only I/O is reading the config and EC parameter
files and, for the subject, the dialogue on the terminal (given as streams, so tests can drive
it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert.dn import RDN, parse_subj
from tlswrap.wrapcert.extconf import ExtSpec, SanNames, parse_extension, parse_san, parse_section
from tlswrap.wrapcert.files import read_bytes
from tlswrap.wrapcert.opensslconf import Conf, parse_conf
from tlswrap.wrapcert.reqconf import (
    DEFAULT_KEY,
    DNField,
    KeySpec,
    ReqSettings,
    parse_key_type,
    read_req,
)

__all__ = ["PREAMBLE", "ReqOptions", "input_files", "prompt_dn", "resolve"]

PREAMBLE = (
    "You are about to be asked to enter information that will be incorporated\n"
    "into your certificate request.\n"
    "What you are about to enter is what is called a Distinguished Name or a DN.\n"
    "There are quite a few fields but you can leave some blank\n"
    "For some fields there will be a default value,\n"
    "If you enter '.', the field will be left blank.\n"
    "-----\n"
)

# Without a config, the questions of OpenSSL's stock openssl.cnf, minus its placeholder defaults.
BUILTIN_FIELDS = [
    DNField("countryName", "2.5.4.6", "Country Name (2 letter code)", minlen=2, maxlen=2),
    DNField("stateOrProvinceName", "2.5.4.8", "State or Province Name (full name)"),
    DNField("localityName", "2.5.4.7", "Locality Name (eg, city)"),
    DNField("organizationName", "2.5.4.10", "Organization Name (eg, company)"),
    DNField("organizationalUnitName", "2.5.4.11", "Organizational Unit Name (eg, section)"),
    DNField("commonName", "2.5.4.3", "Common Name (e.g. server FQDN or YOUR name)", maxlen=64),
    DNField("emailAddress", "1.2.840.113549.1.9.1", "Email Address", maxlen=64),
]

# DER OIDs of named curves in "-----BEGIN EC PARAMETERS-----" files.
_EC_PARAM_OIDS = {
    bytes.fromhex("06082a8648ce3d030107"): "P-256",
    bytes.fromhex("06052b81040022"): "P-384",
    bytes.fromhex("06052b81040023"): "P-521",
}


@dataclass
class ReqOptions:
    config: str | None = None
    days: int | None = None
    out: str | None = None
    keyout: str | None = None
    subj: str | None = None
    newkey: str | None = None
    pkeyopt: list[str] = field(default_factory=list)
    nodes: bool = False
    batch: bool = False
    san: list[str] = field(default_factory=list)
    addext: list[str] = field(default_factory=list)
    key: str | None = None
    md: str | None = None
    force: bool = False
    extensions: str | None = None


@dataclass
class Resolved:
    settings: ReqSettings | None
    key_spec: KeySpec
    subject: list[RDN]
    extensions: list[ExtSpec] | None  # None: the caller's defaults
    san: SanNames | None  # from --san, replaces any other


def _read_conf(path: str) -> Conf:
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TlswrapError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_conf(text, path, os.environ)


def _curve_from_file(path: str) -> str:
    import base64

    data = read_bytes(path)
    if b"-----BEGIN EC PARAMETERS-----" in data:
        body = data.split(b"-----BEGIN EC PARAMETERS-----", 1)[1].split(b"-----END", 1)[0]
        data = base64.b64decode(b"".join(body.split()))
    curve = _EC_PARAM_OIDS.get(data.strip())
    if curve is None:
        raise TlswrapError(f"{path}: not a named-curve EC parameter file for P-256, P-384 or P-521")
    return curve


def _newkey_text(opts: ReqOptions) -> str | None:
    """-newkey with -pkeyopt folded in: ``ec:P-384``, ``rsa:3072``, ``ec:FILE``, or None."""
    text = opts.newkey
    for opt in opts.pkeyopt:
        name, _, value = opt.partition(":")
        if name == "ec_paramgen_curve" and (text or "ec").lower().startswith("ec"):
            text = f"ec:{value}"
        elif name == "rsa_keygen_bits" and (text or "rsa").lower().startswith("rsa"):
            text = f"rsa:{value}"
        else:
            raise TlswrapError(
                f"-pkeyopt {opt}: only ec_paramgen_curve and rsa_keygen_bits are supported"
            )
    return text


def _param_file(text: str | None) -> str | None:
    """The EC parameter file of ``-newkey ec:FILE``, if that is what *text* names."""
    kind, _, arg = (text or "").partition(":")
    if (
        kind.lower() == "ec"
        and arg
        and arg not in ("P-256", "P-384", "P-521")
        and os.path.exists(arg)
    ):
        return arg
    return None


def input_files(opts: ReqOptions) -> list[tuple[str, str | None]]:
    """(option, path) of every file a request reads, for the checks against its outputs."""
    return [
        ("-config", opts.config),
        ("-key", opts.key),
        ("-newkey", _param_file(_newkey_text(opts))),
    ]


def key_spec(opts: ReqOptions, settings: ReqSettings | None) -> KeySpec:
    bits = settings.key.bits if settings and settings.key else DEFAULT_KEY.bits
    text = _newkey_text(opts)
    if text is None:
        return settings.key if settings and settings.key else DEFAULT_KEY
    if (path := _param_file(text)) is not None:
        return KeySpec("ec", curve=_curve_from_file(path))
    return parse_key_type(text, bits)


def prompt_dn(
    fields: Sequence[DNField], stdin: TextIO, stderr: TextIO, interactive: bool
) -> list[RDN]:
    """Ask for each field like ``openssl req`` (apps/req.c ``build_data``), or take defaults.

    Interactive: ``Prompt [default]:`` on stderr, one line from stdin; an empty answer takes the
    default, ``.`` leaves the field out, a length error is printed and the question repeated.
    Not interactive: defaults (and ``_value`` entries) are taken as if Enter was pressed; a
    default that breaks ``_min``/``_max`` is an error.
    """
    if interactive:
        stderr.write(PREAMBLE)
    rdns: list[RDN] = []
    for f in fields:
        while True:
            if interactive:
                stderr.write(f"{f.prompt} [{f.default}]:")
                stderr.flush()
            if f.value is not None:
                answer = f.value
                if interactive:
                    stderr.write(answer + "\n")
            elif interactive:
                line = stdin.readline()
                if not line:
                    raise TlswrapError("no answer (end of input) while reading the subject")
                if not line.endswith("\n"):
                    raise TlswrapError("Missing newline at end of input")
                answer = line[:-1].rstrip("\r")
                if answer == "":
                    answer = f.default
                elif answer == ".":
                    answer = ""
            else:
                answer = f.default
            if answer == "":
                break
            problem = f.check_len(answer)
            if problem is None:
                if f.multi and rdns:
                    rdns[-1].append((f.oid, answer))
                else:
                    rdns.append([(f.oid, answer)])
                break
            if not interactive or f.value is not None:
                raise TlswrapError(f"{f.key} {answer!r}: {problem}")
            stderr.write(problem + "\n")
    return rdns


def _subject(
    opts: ReqOptions, settings: ReqSettings | None, stdin: TextIO, stderr: TextIO
) -> list[RDN]:
    if opts.subj is not None:
        return parse_subj(opts.subj)
    fields = settings.dn_fields if settings and settings.dn_fields else None
    if settings is not None and not settings.prompt:
        if not fields:
            raise TlswrapError(
                f"{settings.filename}: prompt = no needs a distinguished_name section"
            )
        return prompt_dn(fields, stdin, stderr, interactive=False)
    interactive = not opts.batch and stdin.isatty()
    if fields is None:
        if not interactive:
            raise TlswrapError(
                "no subject: give -subj /CN=host.example.org (or --subject), or a -config whose "
                "distinguished_name section has defaults, or run on a terminal to be asked"
            )
        fields = BUILTIN_FIELDS
    rdns = prompt_dn(fields, stdin, stderr, interactive)
    if not rdns:
        raise TlswrapError("the subject is empty: give at least a Common Name")
    return rdns


def resolve(
    opts: ReqOptions,
    stdin: TextIO,
    stderr: TextIO,
    for_csr: bool = False,
    need_subject: bool = True,
) -> Resolved:
    """Validate everything about a request before any key is made or file written."""
    conf = _read_conf(opts.config) if opts.config else None
    settings = read_req(conf) if conf is not None else None
    if settings and settings.encrypt_key and not opts.nodes:
        raise TlswrapError(
            f"{settings.filename}:{settings.encrypt_line}: encrypt_key = yes is not supported: a "
            "TLS wrapper must read its key unattended; set encrypt_key = no or pass -nodes"
        )
    spec = key_spec(opts, settings) if opts.key is None else DEFAULT_KEY
    exts: list[ExtSpec] | None = None
    if opts.extensions is not None:
        if conf is None:
            raise TlswrapError("-extensions needs -config")
        exts = parse_section(conf, opts.extensions, None)
    elif settings is not None:
        exts = settings.req_extensions if for_csr else settings.x509_extensions
    for text in opts.addext:
        name, sep, value = text.partition("=")
        if not sep:
            raise TlswrapError(f"-addext {text!r}: expected name = value")
        ext = parse_extension(name.strip(), value.strip(), "-addext", None)
        exts = [e for e in (exts or []) if e.name != ext.name] + [ext]
    san = None
    if opts.san:
        san = parse_san(",".join(opts.san), "--san", None)
    subject = _subject(opts, settings, stdin, stderr) if need_subject else []
    return Resolved(settings, spec, subject, exts, san)
