"""What a config says that is allowed but worth a word: warnings (read differently, or weak)
and notes (no effect here), each located like an error, for ``tlswrap check``."""

from __future__ import annotations

from .. import proxyproto, ssloptions
from ..errors import ConfigError
from ..tlsoptions import tls_warnings
from .model import SMTP_PORTS, TLS_ORDER, TLS_POLICY, TLS_SERVED, Config, Service
from .options import OPTIONS
from .values import ocsp_flag_note


def version_problem(svc: Service) -> tuple[str, str | None] | None:
    """Why ``svc`` could serve no TLS version: (message, option that says so), or None."""
    vmin, vmax = svc.version_min or TLS_ORDER[0], svc.version_max or TLS_ORDER[-1]
    low, high = svc.tls_range
    max_opt = svc.option_for("version_max") or "sslVersionMax"
    if TLS_ORDER.index(vmax) < TLS_ORDER.index(TLS_SERVED[0]):
        return (f"{max_opt} = {vmax}: {TLS_POLICY}: write {max_opt} = TLSv1.2 or TLSv1.3, "
                "or remove the line to allow both", max_opt)
    if TLS_ORDER.index(vmin) > TLS_ORDER.index(vmax):
        return (f"sslVersionMin {vmin} is above sslVersionMax {vmax}",
                svc.option_for("version_min"))
    served = TLS_SERVED[TLS_SERVED.index(low):TLS_SERVED.index(high) + 1]
    if set(served) <= ssloptions.versions_off(svc.ssl_options):
        turned_off = [o for o in ssloptions.effective(svc.ssl_options)
                      if set(ssloptions.VERSION_OFF.get(o, ())) & set(served)]
        return (f"options = {', '.join(turned_off)}: no TLS version is left to serve "
                f"(from {low} to {high})", "options")
    return None


def proxy_v2_size(svc: Service) -> int:
    """The largest PROXY v2 header ``svc`` can send (0 without one; with STARTTLS the header
    goes before TLS and carries a flag at most)."""
    if svc.proxy_protocol != "v2" or svc.protocol is not None:
        return 0
    tlvs = svc.proxy_tlvs
    alpn = max((len(a) for a in svc.alpn), default=0) if "alpn" in tlvs else 0
    return proxyproto.largest_v2("ssl" in tlvs, "cn" in tlvs and svc.verification.request,
                                 "authority" in tlvs, alpn,
                                 "unique_id" in tlvs and svc.log_id is not None)


def config_warnings(config: Config) -> list[ConfigError]:
    """What ``config`` says that tlswrap reads differently, located like errors; not fatal.

    A minimum TLS version below 1.2 (old stunnel files carry ``sslVersionMin = TLSv1``) is read
    as TLS 1.2. SMTP STARTTLS required on port 25 would turn away senders without TLS. A
    warning written in the global part is given once, without a service.
    """
    found: dict[tuple[int | None, str], list[Service]] = {}
    for svc in config.services:
        opt = svc.option_for("version_min")
        if opt and svc.version_min and svc.version_min != svc.tls_range[0]:
            msg = (f"{opt} = {svc.version_min}: {TLS_POLICY}, so the lowest version served is "
                   f"{svc.tls_range[0]}: write sslVersionMin = {svc.tls_range[0]} to say so")
            found.setdefault((svc.line_of(opt), msg), []).append(svc)
        if (svc.protocol == "smtp" and svc.starttls == "required" and svc.accept is not None
                and svc.accept.port in (25, "smtp")):
            msg = ("protocol = smtp on port 25 with starttls = required: RFC 3207 section 4 "
                   "forbids a public MX to require TLS, senders without it could not deliver; "
                   "write starttls = optional (required is for submission, port 587)")
            line = svc.line_of("starttls") or svc.line_of("protocol")
            found.setdefault((line, msg), []).append(svc)
        size = proxy_v2_size(svc)
        smtp = any(a.port in SMTP_PORTS for a in svc.connect)
        if size > proxyproto.POSTFIX_MAX_HEADER and smtp:
            msg = (f"proxyProtocol = v2 to an SMTP port: a header can reach {size} bytes here "
                   "(a long server name, client certificate CN or ALPN name); postfix refuses "
                   f"headers over {proxyproto.POSTFIX_MAX_HEADER} bytes and reads no TLV: "
                   "write proxyTLVs = ssl (or none) for it")
            found.setdefault((svc.line_of("proxyProtocol"), msg), []).append(svc)
        for msg, option in tls_warnings(svc):
            found.setdefault((svc.line_of(option) or svc.line, msg), []).append(svc)
    return [ConfigError(config.filename, line, msg,
                        svcs[0].name if len(svcs) == 1 else None)
            for (line, msg), svcs in found.items()]


_SERVICE_DEBUG = ("debug: no effect in a service section: tlswrap logs every service at the "
                  "global debug level")


def config_notes(config: Config) -> list[ConfigError]:
    """Options ``config`` carries that have no effect in tlswrap (stunnel's seed files, GUI
    icons, obsolete OpenSSL options...), each located like an error; for ``tlswrap check``."""
    found: dict[tuple[int | None, str], list[str | None]] = {}

    def add(line: int | None, msg: str, service: str | None) -> None:
        found.setdefault((line, msg), []).append(service)

    for key, line in config.globals.lines.items():
        note = OPTIONS[key].note
        if note:
            add(line, note, None)
    for svc in config.services:
        for key, line in svc.lines.items():
            opt = OPTIONS[key]
            if opt.note:
                add(line, opt.note, svc.name)
            elif key == "debug":
                add(line, _SERVICE_DEBUG, svc.name)
            elif key == "retry" and svc.retry is not None and not svc.outbound:
                add(line, "retry: no effect: only a connect+exec service (connect and exec, no "
                          "accept) reconnects, as in stunnel", svc.name)
            elif key == "pskidentity" and not svc.client:
                add(line, "PSKidentity: no effect in a server section (as in stunnel: it picks "
                          "the identity a client sends)", svc.name)
        flag_lines = svc.value_lines.get("ocsp_flags", ())
        for index, flag in enumerate(svc.ocsp_flags):
            note = ocsp_flag_note(flag)
            if note:
                add(flag_lines[index] if index < len(flag_lines) else svc.line_of("OCSPflag"),
                    note, svc.name)
        where = svc.value_lines.get("ssl_options", ())
        for index, option in enumerate(svc.ssl_options):
            note = ssloptions.note(option)
            if note:
                add(where[index] if index < len(where) else svc.line_of("options"), note,
                    svc.name)
    return [ConfigError(config.filename, line, msg, names[0] if len(set(names)) == 1 else None)
            for (line, msg), names in found.items()]
