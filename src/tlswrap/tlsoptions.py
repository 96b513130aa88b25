"""The TLS options of a service, as stunnel spells them: value parsers and the checks that need
several options at once (pure: values in, values or messages out).

- ``alpn = imap, pop3``: the protocols a client may ask for (RFC 7301). A client that offers
  ALPN and names none of them is refused with the no_application_protocol alert, which is what
  stops the ALPACA cross-protocol attack (a browser's HTTPS request redirected to the IMAP
  port); a client that offers no ALPN is served as before. ``ALPN_FOR_PORT`` is what
  ``tlswrap check`` suggests for the implicit-TLS mail ports.
- ``verify = 0..4`` is shorthand for ``requireCert``/``verifyChain``/``verifyPeer`` (stunnel's
  table in ``VERIFY_LEVELS``); the explicit options, wherever written, win over the level.
  ``verifyChain`` or ``verifyPeer`` without ``requireCert = no`` require a certificate.
- ``sni = SERVICE:PATTERN`` (server) makes a section a secondary of SERVICE, chosen when the
  client's server name matches PATTERN; ``sni = NAME`` (``client = yes``) is the name sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .config import Service

S = TypeVar("S", bound="Service")

ALPN_MAX = 255  # one protocol name on the wire: a length byte, then the name (RFC 7301)
# Names used by mail software: imap, pop3 and managesieve are in IANA's registry; smtp and
# submission are what dovecot and nginx's mail module use for the SMTP ports.
MAIL_ALPN = ("imap", "pop3", "managesieve", "smtp", "submission")
ALPN_FOR_PORT = {993: "imap", 995: "pop3", 465: "smtp"}  # the implicit-TLS mail ports
SECURITY_LEVEL_MAX = 5  # OpenSSL's highest


@dataclass(frozen=True)
class VerifyLevel:
    """What ``verify = N`` stands for (stunnel's meaning)."""

    request: bool  # ask the client for a certificate
    require: bool  # refuse a client without one
    chain: bool  # the chain must verify against CAfile/CApath (and the CRLs)
    peer: bool  # the client's own certificate must be in CAfile/CApath


VERIFY_LEVELS = {
    0: VerifyLevel(request=True, require=False, chain=False, peer=False),  # request, ignore
    1: VerifyLevel(request=True, require=False, chain=True, peer=False),  # verify if present
    2: VerifyLevel(request=True, require=True, chain=True, peer=False),
    3: VerifyLevel(request=True, require=True, chain=True, peer=True),
    4: VerifyLevel(request=True, require=True, chain=False, peer=True),  # pinned certificates
}


def parse_alpn(value: str) -> tuple[str, ...]:
    """``alpn = imap, pop3``: protocol names, in the server's order of preference."""
    names = tuple(word for word in value.replace(",", " ").split() if word)
    if not names:
        raise ValueError("empty value")
    for name in names:
        if not name.isascii() or not name.isprintable() or len(name.encode()) > ALPN_MAX:
            raise ValueError(f"{name!r} is not a protocol name (printable ASCII, at most "
                             f"{ALPN_MAX} characters)")
    if len(set(names)) != len(names):
        raise ValueError("a protocol is named twice")
    return names


def parse_verify_level(value: str) -> int:
    if value.isascii() and value.isdigit() and int(value) in VERIFY_LEVELS:
        return int(value)
    raise ValueError("expected a level from 0 to 4 (0: request and ignore, 1: verify if "
                     "present, 2: require and verify, 3: also the certificate itself in "
                     "CAfile/CApath, 4: only that)")


def parse_security_level(value: str) -> int:
    if value.isascii() and value.isdigit() and int(value) <= SECURITY_LEVEL_MAX:
        return int(value)
    raise ValueError(f"expected OpenSSL's security level, 0 to {SECURITY_LEVEL_MAX}")


def parse_ip(value: str) -> str:
    """``checkIP = 192.0.2.7``: an IPv4 or IPv6 address, written canonically."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def parse_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def parse_sni(value: str) -> str:
    """``sni = SERVICE:PATTERN`` (server) or ``sni = NAME`` (client); checked when the section
    is built, since only then is it known which."""
    if not value or any(c.isspace() for c in value):
        raise ValueError("expected SERVICE:PATTERN (a server) or a host name (client = yes)")
    return value


def split_sni(value: str) -> tuple[str, str] | None:
    """``SERVICE:PATTERN`` as (service, lower-cased pattern); None if it is not that form."""
    service, colon, pattern = value.rpartition(":")
    if not colon or not service or not pattern:
        return None
    return service, pattern.lower().rstrip(".")


def resolve_verify(level: int | None, chain: bool | None, peer: bool | None,
                   require: bool | None) -> VerifyLevel:
    """The effective client-certificate policy: the level's, with each explicit option over
    it. Without ``verify`` or an explicit option nothing is requested."""
    base = VERIFY_LEVELS[level] if level is not None else VerifyLevel(False, False, False,
                                                                        False)
    chain = base.chain if chain is None else chain
    peer = base.peer if peer is None else peer
    if require is None:
        require = base.require or (level is None and (chain or peer))
    return VerifyLevel(request=base.request or chain or peer or require, require=require,
                       chain=chain, peer=peer)


def service_problems(values: dict[str, Any]) -> list[tuple[str, str | None]]:
    """What is wrong with one section's TLS options taken together: (message, option)."""
    problems: list[tuple[str, str | None]] = []
    client = values.get("client", False)
    policy = resolve_verify(values.get("verify"), values.get("verify_chain"),
                            values.get("verify_peer"), values.get("require_cert"))
    verifying = policy.chain or policy.peer or (
        client and values.get("verify_chain") is not False and values.get("verify") is None)
    anchors = values.get("ca_file") or values.get("ca_path") or values.get("ca_store")
    if (policy.chain or policy.peer) and not anchors and not client:
        option = "verifyPeer" if policy.peer and not policy.chain else "verifyChain"
        said = option if values.get("verify") is None else f"verify = {values['verify']}"
        problems.append((f"{said}: say which CAs or certificates to trust (CAfile or "
                         "CApath)", "verify" if values.get("verify") is not None else option))
    if client and policy.peer and not anchors:
        problems.append(("verifyPeer: the certificates to accept go in CAfile or CApath",
                         "verifyPeer" if values.get("verify_peer") else "verify"))
    for option, attr in (("checkHost", "check_host"), ("checkEmail", "check_email"),
                         ("checkIP", "check_ip"), ("redirect", "redirect"),
                         ("CRLfile", "crl_file"), ("CRLpath", "crl_path")):
        if values.get(attr) and not verifying:
            problems.append((f"{option} applies to a verified certificate: set verify = 2 (or "
                             "verifyChain = yes)", option))
    if client:
        for option, attr in (("redirect", "redirect"), ("sniStrict", "sni_strict"),
                             ("requireCert", "require_cert")):
            if values.get(attr):
                problems.append((f"{option} is for a server, not client = yes", option))
        if values.get("ocsp_staple", "auto") not in ("auto", "no"):
            problems.append(("OCSPstaple is for a server, not client = yes", "OCSPstaple"))
        if len(values.get("sni", ())) > 1:
            problems.append(("sni: a client sends one server name", "sni"))
        if values.get("exec"):
            problems.append(("exec with client = yes (stunnel's TLS over the program's stdin "
                             "and stdout, e.g. a proxy connector) is not supported: tlswrap's "
                             "client = yes speaks TLS to a 'connect' server", "exec"))
        if values.get("proxy_protocol"):
            problems.append(("a PROXY header towards a TLS server (client = yes) is not "
                             "supported", "proxyProtocol" if values.get("proxy_protocol")
                             == "v2" else "protocol"))
        if values.get("more_certs"):
            problems.append(("cert: a client sends one certificate", "cert"))
    else:
        problems += [(f"sni = {value}: expected SERVICE:PATTERN (a secondary section of "
                      "SERVICE, for server names matching PATTERN)", "sni")
                     for value in values.get("sni", ()) if split_sni(value) is None]
        if values.get("sni") and values.get("accept") is not None:
            problems.append(("sni: a secondary section is reached through its primary "
                             "service's accept, and has no accept of its own", "accept"))
    return problems


def sni_problems(services: list[S]) -> tuple[list[S], list[tuple[int | None, str, str]]]:
    """The services with each ``sni = SERVICE:PATTERN`` section moved under its primary
    (``sni_sections``), and (line, message, section) for each that cannot be."""
    from dataclasses import replace

    primaries = [svc for svc in services if svc.client or not svc.sni]
    by_name = {svc.name: i for i, svc in enumerate(primaries)}
    errors: list[tuple[int | None, str, str]] = []
    for svc in services:
        if svc.client or not svc.sni:
            continue
        parents = {parsed[0] for value in svc.sni if (parsed := split_sni(value))}
        if len(parents) != 1:
            errors.append((svc.line_of("sni"), "sni: every line of a section names the same "
                                               "primary service", svc.name))
            continue
        parent = parents.pop()
        index = by_name.get(parent)
        if index is None or primaries[index].accept is None:
            errors.append((svc.line_of("sni"), f"sni: no primary service [{parent}] with an "
                                               "accept", svc.name))
            continue
        primary = primaries[index]
        primaries[index] = replace(primary, sni_sections=(*primary.sni_sections, svc))
    return primaries, errors


def alpn_select(wanted: Sequence[bytes], offered: bytes) -> int | None:
    """The offset, in the client's ALPN list ``offered`` (RFC 7301 wire form: length-prefixed
    names), of the first of ``wanted`` it holds; None if it holds none or is malformed."""
    offsets: dict[bytes, int] = {}
    at = 0
    while at < len(offered):
        size = offered[at]
        if size == 0 or at + 1 + size > len(offered):
            return None
        offsets.setdefault(offered[at + 1:at + 1 + size], at)
        at += 1 + size
    for name in wanted:
        if name in offsets:
            return offsets[name]
    return None


def tls_warnings(svc: Service) -> list[tuple[str, str]]:
    """(message, option) for what is allowed but weak: a mail port served without ``alpn``
    (ALPACA), a client that does not verify the server."""
    found: list[tuple[str, str]] = []
    port = svc.accept.port if svc.accept is not None and not svc.accept.is_unix else None
    if not svc.client and not svc.alpn and isinstance(port, int) and port in ALPN_FOR_PORT:
        name = ALPN_FOR_PORT[port]
        found.append((f"accept = {svc.accept}: add alpn = {name}, so that a client offering "
                      f"another protocol (a browser sent here by the ALPACA attack) is refused; "
                      "clients without ALPN are still served", "accept"))
    if svc.ocsp_checks and not svc.verification.chain:
        found.append(("OCSPaia/OCSP: the peer's certificates are checked with OCSP only when "
                      "their chain is verified (verifyChain = yes or verify >= 1, as in "
                      "stunnel): this has no effect", "OCSPaia" if svc.ocsp_aia else "OCSP"))
    if svc.client and not svc.verification.chain:
        found.append(("client = yes without verifyChain: any server certificate is accepted, "
                      "so anyone on the path can read the traffic", "verifyChain"
                      if svc.verify_chain is not None else "verify"))
    if (svc.client and svc.verify is None and svc.verify_chain is None
            and svc.verify_peer is None and not svc.ca_file and not svc.ca_path and not svc.ca_store
            and not svc.psk_secrets):
        found.append(("client = yes with no verify line: stunnel checks nothing, tlswrap "
                      "verifies the server's certificate against the system's CAs and its "
                      "name, so a server with a self-signed or private-CA certificate is "
                      "refused: name its CA in CAfile, or write verifyChain = no for "
                      "stunnel's way", "client"))
    return found
