"""One parser per kind of option value: each takes the raw text and returns the value, or
raises ValueError with the reason (the caller adds FILE:LINE and the option)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from .model import (
    C_INT_MAX,
    HOST_LABEL_MAX,
    HOST_NAME_MAX,
    ID_MAX,
    LOG_LEVELS,
    PROXY_TLVS,
    SESSION_TIMEOUT_MAX,
    STARTTLS_PROTOCOLS,
    SUN_PATH_MAX,
    SYSLOG_FACILITIES,
    TLS_VERSIONS,
    Address,
    Secret,
)


def parse_bool(value: str) -> bool:
    v = value.lower()
    if v in ("yes", "true", "on", "1"):
        return True
    if v in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


def parse_foreground(value: str) -> bool:
    # stunnel also knows "quiet" (foreground, no stderr echo of syslog lines)
    return True if value.lower() == "quiet" else parse_bool(value)


def parse_seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not n >= 0 or n == float("inf"):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    return n


def _is_number(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²' and '٣', which ``int`` may refuse."""
    return value.isascii() and value.isdigit()


def parse_positive_int(value: str) -> int:
    if not _is_number(value) or int(value) < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return int(value)


WORKERS_AUTO = 0  # workers = auto: one per usable CPU, counted by load_config


def parse_workers(value: str) -> int:
    """``workers = N | auto`` (``WORKERS_AUTO``, resolved when the file is loaded)."""
    if value.lower() == "auto":
        return WORKERS_AUTO
    try:
        return parse_positive_int(value)
    except ValueError:
        raise ValueError(f"expected a positive whole number or auto, got {value!r}") from None


def parse_port(value: str) -> int | str:
    if _is_number(value):
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {value!r}")
        return port
    if not value.isascii() or not value.replace("-", "").isalnum():
        raise ValueError(f"bad port: {value!r}")
    return value  # a service name, looked up when bound


def parse_address(value: str, default_host: str | None, allow_unix: bool) -> Address:
    """``[HOST:]PORT``, ``[IPV6]:PORT``, ``:::PORT`` or, where allowed, a unix socket path."""
    value = value.strip()
    host: str | None
    if value.startswith("/"):
        if not allow_unix:
            raise ValueError(f"a unix socket is not allowed here: {value!r}")
        size = len(value.encode())
        if size > SUN_PATH_MAX:
            raise ValueError(f"a unix socket path is at most {SUN_PATH_MAX} bytes, this one "
                             f"has {size}")
        return Address(path=value)
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError(f"bad address {value!r}: expected [IPV6]:PORT")
        host, port = value[1:end], value[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r} in {value!r}") from None
    elif ":" in value:
        host, port = value.rsplit(":", 1)
        if not host:
            raise ValueError(f"bad address {value!r}: empty host")
    else:
        host, port = default_host, value
    if host is not None and ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r} in {value!r}") from None
    elif host is not None:
        check_host_name(host)
    return Address(host=host, port=parse_port(port))


def check_host_name(host: str) -> None:
    """ValueError unless ``host`` is a name (or IPv4 address) the resolver can be asked for.

    Python encodes a name with the ``idna`` codec before getaddrinfo (a label over 63
    characters is a UnicodeError there), and trio encodes a non-ASCII one with the ``idna``
    package (IDNA 2008, UTS 46): a name is checked as both will, so neither fails later.
    """
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError("not a valid host name")
    if not host.isascii():
        try:
            written = host.encode("idna").decode("ascii")
            import idna

            idna.encode(host, uts46=True)
        except UnicodeError as exc:  # idna.IDNAError is one too
            raise ValueError(f"not a valid host name ({exc})") from None
        host = written
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()  # the root: "mail.example.org."
    if any(not label for label in labels):
        raise ValueError("the host name has an empty label")
    if any(len(label) > HOST_LABEL_MAX for label in labels):
        raise ValueError(f"the host name has a label longer than {HOST_LABEL_MAX} characters")
    if len(".".join(labels)) > HOST_NAME_MAX:
        raise ValueError(f"the host name is longer than {HOST_NAME_MAX} characters")


def parse_accept(value: str) -> Address:
    return parse_address(value, default_host="0.0.0.0", allow_unix=True)


def parse_connect(value: str) -> Address:
    return parse_address(value, default_host="localhost", allow_unix=True)


def parse_version(value: str) -> str | None:
    try:
        return TLS_VERSIONS[value.lower()]
    except KeyError:
        raise ValueError(
            f"unknown TLS version {value!r}: use TLSv1.2, TLSv1.3 or all") from None


def parse_debug(value: str) -> tuple[str | None, int]:
    prefix, _, level = value.rpartition(".")
    facility = prefix.lower() or None
    if facility is not None and facility not in SYSLOG_FACILITIES:
        raise ValueError(f"unknown syslog facility {facility!r}")
    lv = level.lower()
    if _is_number(lv) and int(lv) <= 7:
        return facility, int(lv)
    if lv in LOG_LEVELS:
        return facility, LOG_LEVELS[lv]
    raise ValueError(f"unknown debug level {level!r}: use 0-7 or emerg..debug")


def parse_protocol(value: str) -> str:
    """stunnel's ``protocol``: ``proxy`` (a PROXY v1 header to the backend) or a STARTTLS
    protocol, ``imap``, ``pop3`` or ``smtp`` (stunnel's names; server side)."""
    name = value.lower()
    if name in ("proxy", *STARTTLS_PROTOCOLS):
        return name
    if name in ("connect", "socks", "cifs", "pgsql", "nntp", "ldap", "capwin", "capwinctrl",
                "websocket"):
        raise ValueError(f"{name} is not a mail protocol; tlswrap speaks imap, pop3, smtp "
                         "(STARTTLS) and proxy")
    raise ValueError("unknown protocol: tlswrap speaks imap, pop3, smtp (STARTTLS) and proxy")


SMTP_AUTH_MECHANISMS = ("plain", "login")  # stunnel's protocolAuthentication for smtp


def parse_protocol_authentication(value: str) -> str:
    """stunnel's ``protocolAuthentication`` for smtp: ``plain`` (its default) or ``login``;
    stunnel's connect types (basic, ntlm) said to belong there."""
    name = value.lower()
    if name in SMTP_AUTH_MECHANISMS:
        return name
    if name in ("basic", "ntlm"):
        raise ValueError(f"{name} is for protocol = connect, which tlswrap does not speak; "
                         "protocol = smtp takes plain or login")
    raise ValueError("expected plain or login (SMTP AUTH with protocol = smtp)")


def parse_secret(value: str) -> Secret:
    """A password: any text but none (the caller never repeats the value in a message)."""
    if not value:
        raise ValueError("empty value")
    return Secret(value)


def parse_starttls(value: str) -> str:
    """tlswrap's ``starttls = required | optional``: may a client go on without TLS?"""
    name = value.lower()
    if name not in ("required", "optional"):
        raise ValueError("expected required or optional")
    return name


def parse_proxy_version(value: str) -> str:
    """tlswrap's ``proxyProtocol = v1 | v2``: which PROXY header goes to the backend."""
    name = value.lower()
    if name not in ("v1", "v2"):
        raise ValueError("expected v1 or v2")
    return name


def parse_accept_proxy(value: str) -> str:
    """tlswrap's ``acceptProxy = v1 | v2 | any``: the PROXY header a trusted balancer sends."""
    name = value.lower()
    if name not in ("v1", "v2", "any"):
        raise ValueError("expected v1, v2 or any")
    return name


def parse_networks(value: str) -> tuple[str, ...]:
    """``proxyTrusted = 10.0.0.0/8, 2001:db8::/32, 192.0.2.7``: networks, as written."""
    import ipaddress

    nets = tuple(word for word in value.replace(",", " ").split() if word)
    if not nets:
        raise ValueError("empty value")
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not an address or network") from None
    return nets


def parse_only(allowed: str, why: str) -> Callable[[str], str]:
    """An stunnel option tlswrap accepts with one value only (so existing files keep working)."""
    def parse(value: str) -> str:
        if value.lower() != allowed:
            raise ValueError(why)
        return allowed
    return parse


def parse_bool_only(allowed: bool, why: str) -> Callable[[str], bool]:
    def parse(value: str) -> bool:
        if parse_bool(value) != allowed:
            raise ValueError(why)
        return allowed
    return parse


def parse_choice(*allowed: str) -> Callable[[str], str]:
    """One of ``allowed`` (case ignored, as stunnel does)."""
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(f"expected {' or '.join(allowed)}")
        return value.lower()
    return parse


def parse_host(value: str) -> str:
    """A host name or an IP address (no port)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    check_host_name(host)
    return host


def parse_transparent(value: str) -> str:
    """stunnel's ``transparent``: none, source (and its old spellings no/yes); destination and
    both are refused (they need the netfilter redirect stunnel documents, not built here)."""
    word = {"no": "none", "yes": "source"}.get(value.lower(), value.lower())
    if word in ("destination", "both"):
        raise ValueError("transparent destination (the netfilter-redirected original "
                         "destination) is not supported; use connect")
    if word not in ("none", "source"):
        raise ValueError("expected none, source, destination or both")
    return word


def parse_id(kind: str) -> Callable[[str], str]:
    """``setuid``/``setgid``: a name, or a number (as ``str.isdigit`` says, which is how it
    is told from a name when used) that fits ``uid_t``/``gid_t``."""
    def parse(value: str) -> str:
        value = parse_text(value)
        if value.isdigit() and not (value.isascii() and int(value) <= ID_MAX):
            shown = value if _is_number(value) else repr(value)
            raise ValueError(f"a {kind} id is 0 to {ID_MAX}, got {shown}")
        return value
    return parse


def parse_count(value: str) -> int:
    """A whole number, 0 or more, that fits a C int."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > C_INT_MAX:
        raise ValueError(f"expected a whole number from 0 to {C_INT_MAX}, got {value!r}")
    return int(text)


def parse_session_timeout(value: str) -> float:
    seconds = parse_seconds(value)
    if seconds > SESSION_TIMEOUT_MAX:
        raise ValueError(f"at most {SESSION_TIMEOUT_MAX} seconds")
    return seconds


def parse_http_url(value: str) -> str:
    """An http:// URL (OCSP responders are plain HTTP: the response is signed)."""
    scheme, sep, rest = value.partition("://")
    if scheme.lower() != "http" or not sep or not rest or any(c.isspace() for c in value):
        raise ValueError("expected an http:// URL")
    return value


# OCSPflag: OpenSSL's OCSP_basic_verify flags, the names stunnel takes
OCSP_FLAGS = ("NOCERTS", "NOINTERN", "NOSIGS", "NOCHAIN", "NOVERIFY", "NOEXPLICIT",
              "NOCASIGN", "NODELEGATED", "NOCHECKS", "TRUSTOTHER", "RESPID_KEY", "NOTIME")


# OCSPflag names that loosen the checking of a responder's own chain: tlswrap builds none
# (a responder certificate must be signed by the issuer itself), so they change nothing
NO_CHAIN_FLAGS = ("NOVERIFY", "NOCHAIN", "NOEXPLICIT", "TRUSTOTHER", "NOTIME")
SIGNING_FLAGS = ("NOCERTS", "RESPID_KEY")  # for making requests and responses only


def ocsp_flag_note(flag: str) -> str | None:
    """What ``OCSPflag = flag`` does not do here (for ``tlswrap check``), or None."""
    if flag in NO_CHAIN_FLAGS:
        return (f"OCSPflag = {flag}: no effect: a responder certificate is accepted only when "
                "the issuer signed it directly, so there is no responder chain to loosen")
    if flag == "NOCHECKS":
        return ("OCSPflag = NOCHECKS: no effect: the response must still be signed by the "
                "issuer or by its delegated responder (RFC 6960), never by another trusted "
                "certificate")
    if flag in SIGNING_FLAGS:
        return (f"OCSPflag = {flag}: no effect: it concerns signing OCSP requests and "
                "responses, which tlswrap does not do")
    return None


def parse_ocsp_flag(value: str) -> str:
    name = value.upper()
    if name not in OCSP_FLAGS:
        raise ValueError(f"unknown OCSP flag: expected one of {', '.join(OCSP_FLAGS)}")
    return name


def parse_ocsp_staple(value: str) -> str:
    """``OCSPstaple = auto | no | FILE`` (tlswrap's own): a FILE is a path; write ./auto for
    a file called auto."""
    if not value:
        raise ValueError("empty value: expected auto, no or a file")
    return value.lower() if value.lower() in ("auto", "no") else value


def parse_check_host(value: str) -> str:
    check_host_name(value)
    return value


def parse_ca_store(value: str) -> str:
    """stunnel's ``CAstore = URI`` (OpenSSL's OSSL_STORE), as far as tlswrap can honour it: a
    path or a ``file:`` URI (``file:/abs``, ``file:///abs``, ``file://localhost/abs``,
    %-escapes decoded), naming a PEM file or a hashed directory; the path is returned. The
    binding tlswrap uses has no OSSL_STORE, so other schemes (``pkcs11:``, the Windows store,
    ``http:``) are refused with what to use instead."""
    from urllib.parse import unquote

    if not value:
        raise ValueError("empty value")
    scheme, colon, rest = value.partition(":")
    is_uri = colon and scheme[:1].isalpha() and all(
        c.isalnum() or c in "+-." for c in scheme) and scheme.isascii()
    if not is_uri:
        return value  # a path, as CAfile or CApath takes one
    if scheme.lower() != "file":
        raise ValueError(f"the {scheme.lower()}: store is not supported: tlswrap reads a PEM "
                         "file or a hashed directory (a path or a file: URI); use CAfile or "
                         "CApath (client = yes trusts the system's CAs when none is given)")
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host.lower() not in ("", "localhost"):
            raise ValueError(f"a file: URI names a file on this machine, not on {host!r}")
        rest = slash + path
    try:
        path = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("its %-escapes are not UTF-8") from None
    if not path:
        raise ValueError("a file: URI without a path")
    if "\0" in path:
        raise ValueError("a NUL (%00) in the path")
    return path


def parse_text(value: str) -> str:
    if not value:
        raise ValueError("empty value")
    return value


def parse_args(value: str) -> tuple[str, ...]:
    return tuple(value.split())


def parse_set_env(value: str) -> tuple[str, str]:
    """``setEnv = NAME=VALUE`` (sets), ``setEnv = NAME`` or ``NAME=`` (removes), as stunnel."""
    name, _, text = value.partition("=")
    name = name.strip()
    if not name:
        raise ValueError("expected NAME=VALUE")
    return name, text.strip()


def parse_retry(value: str) -> float | None:
    """stunnel's ``retry = yes | no | DELAY``: DELAY in milliseconds, ``yes`` is 1000."""
    word = value.strip().lower()
    if word in ("yes", "no"):
        return 1.0 if word == "yes" else None
    if not (word.isascii() and word.isdigit()) or int(word) > C_INT_MAX:
        raise ValueError("expected yes, no or a delay in milliseconds")
    return int(word) / 1000


def parse_proxy_tlvs(value: str) -> tuple[str, ...]:
    """``proxyTLVs = ssl, cn, authority, alpn`` (or ``none``): what a v2 header carries."""
    names = tuple(n.strip().lower() for n in value.replace(",", " ").split())
    if names == ("none",):
        return ()
    wrong = [n for n in names if n not in PROXY_TLVS]
    if wrong or not names:
        raise ValueError(f"expected some of {', '.join(PROXY_TLVS)}, or none")
    if "cn" in names and "ssl" not in names:
        raise ValueError("cn travels inside the ssl TLV: name ssl too")
    return tuple(n for n in PROXY_TLVS if n in names)


def parse_absolute_path(value: str) -> str:
    path = parse_text(value)
    if not path.startswith("/"):
        raise ValueError("needs an absolute path")
    return path


def parse_service_name(value: str) -> str:
    name = parse_text(value)
    if not name.isprintable() or len(name) > 64:
        raise ValueError("a service name is at most 64 printable characters")
    return name


def parse_syslog_address(value: str) -> str | tuple[str, int]:
    """``syslogAddress``: the path of syslog's unix socket, or ``HOST:PORT`` of a syslog
    server taking UDP (RFC 5426), the port a number."""
    try:
        address = parse_address(value, None, True)
    except ValueError as exc:
        raise ValueError(f"{exc} (expected the path of syslog's unix socket, e.g. /dev/log, "
                         "or HOST:PORT of a syslog server over UDP)") from None
    if address.path is not None:
        return address.path
    if address.host is None:
        raise ValueError(f"expected the path of syslog's unix socket (e.g. /dev/log) or "
                         f"HOST:PORT of a syslog server over UDP, got {value!r}")
    if isinstance(address.port, str):
        raise ValueError(f"the port of a syslog server is a number (syslog's is 514), got "
                         f"{address.port!r}")
    return (address.host, address.port)


def parse_metrics_address(value: str) -> Address:
    """``metrics = [HOST:]PORT``: where the Prometheus text is served (127.0.0.1 by default)."""
    return parse_address(value, "127.0.0.1", False)
