"""What ``openssl req`` takes from its config: the ``[req]`` section and the sections it names.

Pure: a parsed :class:`~tlswrap.wrapcert.opensslconf.Conf` in, a :class:`ReqSettings` out.
Only sections reachable from ``[req]`` are examined, so a full ``openssl.cnf`` (with ``[ca]``,
``[tsa]``, ...) is fine; inside them, anything wrapcert would not honour is an error at its line
rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tlswrap.errors import ConfigError, TlswrapError
from tlswrap.wrapcert.dn import COUNTRY_OID, lookup
from tlswrap.wrapcert.extconf import ExtSpec, parse_section
from tlswrap.wrapcert.opensslconf import Conf, Entry, parse_number

__all__ = ["DNField", "KeySpec", "ReqSettings", "parse_key_type", "read_req", "weak_rsa_reason"]

# NIST SP 800-131A disallows RSA below 2048 bits since 2013, and OpenSSL's default security
# level 2 (Debian, RHEL, Ubuntu) refuses such keys in TLS: a shorter key would not even work.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384

CURVES = {
    "P-256": "P-256", "prime256v1": "P-256", "secp256r1": "P-256",
    "P-384": "P-384", "secp384r1": "P-384",
    "P-521": "P-521", "secp521r1": "P-521",
}  # fmt: skip
DIGESTS = ("sha256", "sha384", "sha512")
_WEAK_DIGESTS = ("md5", "sha1", "md2", "md4", "mdc2", "ripemd160", "sha224")

_REQ_KEYS = frozenset({
    "default_bits", "default_keyfile", "distinguished_name", "x509_extensions", "req_extensions",
    "prompt", "encrypt_key", "default_md", "string_mask", "utf8", "attributes", "RANDFILE",
})  # fmt: skip
_REQ_UNSUPPORTED = frozenset({"input_password", "output_password", "oid_file", "oid_section"})
_DN_SUFFIXES = ("_default", "_min", "_max", "_value")


def weak_rsa_reason(bits: int) -> str:
    return (
        f"RSA keys of {bits} bits are too weak: use at least {MIN_RSA_BITS} bits (NIST SP 800-131A;"
        " OpenSSL at security level 2, the default of current distributions, refuses shorter"
        " keys in TLS) or an EC key (ec:P-256)"
    )


@dataclass(frozen=True)
class KeySpec:
    """The key to generate: ``rsa`` with *bits*, ``ec`` with a NIST *curve*, or ``ed25519``."""

    kind: str
    bits: int = 0
    curve: str = ""

    def __str__(self) -> str:
        return {"rsa": f"RSA {self.bits}", "ec": f"EC {self.curve}"}.get(self.kind, "Ed25519")


DEFAULT_KEY = KeySpec("rsa", 2048)


def parse_key_type(text: str, default_bits: int = 2048) -> KeySpec:
    """``rsa[:BITS]``, ``ec[:CURVE]`` (P-256, P-384, P-521 or their OpenSSL names), ``ed25519``."""
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "rsa":
        if not arg:
            bits = default_bits
        elif (number := parse_number(arg)) is not None:
            bits = number
        else:
            raise TlswrapError(f"bad RSA key size {arg!r} in {text!r}: expected e.g. rsa:2048")
        if bits < MIN_RSA_BITS:
            raise TlswrapError(weak_rsa_reason(bits))
        if bits > MAX_RSA_BITS:
            raise TlswrapError(f"RSA keys above {MAX_RSA_BITS} bits are not supported")
        return KeySpec("rsa", bits)
    if kind == "ec":
        curve = CURVES.get(arg or "P-256")
        if curve is None:
            raise TlswrapError(f"unknown curve {arg!r}: use P-256, P-384 or P-521")
        return KeySpec("ec", curve=curve)
    if kind == "ed25519" and not arg:
        return KeySpec("ed25519")
    raise TlswrapError(f"unknown key type {text!r}: use rsa:BITS, ec:P-256, ec:P-384 or ed25519")


@dataclass(frozen=True)
class DNField:
    """One field of a distinguished-name section.

    *key* is the entry name as written (``0.commonName``); *multi* is the ``+`` prefix (joins
    the previous RDN). *prompt* is the question (prompt mode) and *value* the fixed value
    (``prompt = no``, or a ``_value`` entry). *minlen*/*maxlen* are -1 when not set.
    """

    key: str
    oid: str
    prompt: str
    default: str = ""
    value: str | None = None
    minlen: int = -1
    maxlen: int = -1
    multi: bool = False
    lineno: int = 0

    def check_len(self, text: str) -> str | None:
        """OpenSSL's ``req_check_len`` message for *text* (counted in bytes), or None if fine."""
        n = len(text.encode("utf-8"))
        if self.minlen > 0 and n < self.minlen:
            return f"String too short, must be at least {self.minlen} bytes long"
        if self.maxlen >= 0 and n > self.maxlen:
            return f"String too long, must be at most {self.maxlen} bytes long"
        if self.oid == COUNTRY_OID and text and len(text) != 2:
            return "Country Name must be a 2 letter code"
        return None


@dataclass
class ReqSettings:
    """The parts of ``[req]`` wrapcert uses, each with the line it came from."""

    filename: str
    key: KeySpec | None = None
    key_line: int | None = None
    default_keyfile: str | None = None
    md: str | None = None
    prompt: bool = True
    encrypt_key: bool = False
    encrypt_line: int | None = None
    dn_fields: list[DNField] = field(default_factory=list)
    x509_extensions: list[ExtSpec] | None = None
    req_extensions: list[ExtSpec] | None = None


def _field_type(key: str) -> tuple[str, bool]:
    """Strip OpenSSL's ``N.`` / ``N:`` / ``N,`` prefix and the ``+`` multi-value mark."""
    name = key
    for i, ch in enumerate(key):
        if ch in ":,.":
            if key[i + 1 :]:
                name = key[i + 1 :]
            break
    if name.startswith("+"):
        return name[1:], True
    return name, False


def _int_entry(conf: Conf, entry: Entry, what: str) -> int:
    number = parse_number(entry.value)
    if number is None:
        raise conf.error(
            entry.lineno, f"{what} = {entry.value!r}: expected a number (ASCII digits)"
        )
    return number


def read_dn_section(
    conf: Conf, section: str, prompt: bool, ref_lineno: int | None
) -> list[DNField]:
    entries = conf.section(section)
    if entries is None:
        raise conf.error(ref_lineno, f"distinguished_name section [{section}] not found")
    by_name = {e.name: e for e in entries}
    fields: list[DNField] = []
    for entry in entries:
        base = entry.name
        if prompt and base.endswith(_DN_SUFFIXES):
            owner = base[: base.rindex("_")]
            if owner not in by_name:
                raise conf.error(
                    entry.lineno,
                    f"{base!r} belongs to no field: declare '{owner} = prompt text' in [{section}]",
                )
            continue
        type_name, multi = _field_type(base)
        try:
            oid = lookup(type_name)
        except TlswrapError as exc:
            raise conf.error(entry.lineno, str(exc)) from None
        if oid is None:
            raise conf.error(entry.lineno, f"unknown distinguished-name field {type_name!r}")
        if not prompt:
            fields.append(
                DNField(base, oid, "", value=entry.value, multi=multi, lineno=entry.lineno)
            )
            continue
        default = by_name.get(base + "_default")
        value = by_name.get(base + "_value")
        minlen = by_name.get(base + "_min")
        maxlen = by_name.get(base + "_max")
        fields.append(
            DNField(
                base,
                oid,
                entry.value,
                default=default.value if default else "",
                value=value.value if value else None,
                minlen=_int_entry(conf, minlen, minlen.name) if minlen else -1,
                maxlen=_int_entry(conf, maxlen, maxlen.name) if maxlen else -1,
                multi=multi,
                lineno=entry.lineno,
            )
        )
    if not fields:
        raise conf.error(conf.section_lines.get(section), f"[{section}] defines no fields")
    return fields


def read_req(conf: Conf) -> ReqSettings:
    """Interpret ``[req]``; raises :class:`ConfigError` at the offending line."""
    req = conf.section("req")
    if req is None:
        raise ConfigError(conf.filename, None, "no [req] section")
    settings = ReqSettings(conf.filename)
    for entry in req:
        if entry.name in _REQ_UNSUPPORTED:
            raise conf.error(entry.lineno, f"{entry.name} is not supported by wrapcert")
        if entry.name not in _REQ_KEYS:
            raise conf.error(entry.lineno, f"unknown [req] entry {entry.name!r}")

    def get(name: str) -> Entry | None:
        return conf.get("req", name)

    if (e := get("default_bits")) is not None:
        bits = _int_entry(conf, e, "default_bits")
        if bits < MIN_RSA_BITS:
            raise conf.error(e.lineno, f"default_bits = {bits}: " + weak_rsa_reason(bits))
        if bits > MAX_RSA_BITS:
            raise conf.error(e.lineno, f"default_bits = {bits}: above {MAX_RSA_BITS} bits")
        settings.key, settings.key_line = KeySpec("rsa", bits), e.lineno
    if (e := get("default_keyfile")) is not None and e.value:
        settings.default_keyfile = e.value
    if (e := get("default_md")) is not None:
        md = e.value.strip().lower()
        if md in _WEAK_DIGESTS:
            raise conf.error(
                e.lineno, f"default_md = {e.value}: too weak for signatures; use sha256"
            )
        if md != "default" and md not in DIGESTS:
            raise conf.error(e.lineno, f"default_md = {e.value}: use sha256, sha384 or sha512")
        settings.md = None if md == "default" else md
    if (e := get("string_mask")) is not None and e.value.strip() != "utf8only":
        raise conf.error(e.lineno, f"string_mask = {e.value}: only utf8only is supported")
    if (e := get("prompt")) is not None:
        settings.prompt = e.value.strip() != "no"
    if (e := get("encrypt_key")) is not None:
        settings.encrypt_key = e.value.strip() != "no"
        settings.encrypt_line = e.lineno
    if (e := get("distinguished_name")) is not None:
        settings.dn_fields = read_dn_section(conf, e.value.strip(), settings.prompt, e.lineno)
    for attr in ("x509_extensions", "req_extensions"):
        if (e := get(attr)) is not None:
            setattr(settings, attr, parse_section(conf, e.value.strip(), e.lineno))
    return settings
