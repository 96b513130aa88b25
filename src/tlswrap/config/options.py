"""Every option tlswrap knows, once: its stunnel spelling, where it may stand, the field it
sets and the parser of its value (``OPTIONS``); options kept only for compatibility say so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import sockopts, ssloptions
from ..limits import parse_ipv6_prefix, parse_rate
from ..tlsoptions import (
    parse_alpn,
    parse_email,
    parse_ip,
    parse_security_level,
    parse_sni,
    parse_verify_level,
)
from .values import (
    parse_absolute_path,
    parse_accept,
    parse_accept_proxy,
    parse_args,
    parse_bool,
    parse_bool_only,
    parse_ca_store,
    parse_check_host,
    parse_choice,
    parse_connect,
    parse_count,
    parse_debug,
    parse_foreground,
    parse_host,
    parse_http_url,
    parse_id,
    parse_metrics_address,
    parse_networks,
    parse_ocsp_flag,
    parse_ocsp_staple,
    parse_only,
    parse_positive_int,
    parse_protocol,
    parse_protocol_authentication,
    parse_proxy_tlvs,
    parse_proxy_version,
    parse_retry,
    parse_seconds,
    parse_secret,
    parse_service_name,
    parse_session_timeout,
    parse_set_env,
    parse_starttls,
    parse_syslog_address,
    parse_text,
    parse_transparent,
    parse_version,
    parse_workers,
)


@dataclass(frozen=True)
class Option:
    name: str               # stunnel's spelling, for messages
    scope: str              # "global" or "service"
    attr: str               # field on GlobalOptions / Service
    parse: Callable[[str], Any]
    repeat: bool = False    # values accumulate into a tuple
    also: tuple[str, ...] = ()  # more fields that get the same value (sslVersion: min and max)
    note: str | None = None  # accepted without effect: what `tlswrap check` says about it
    secret: bool = False    # its value is never repeated in a message (a password)


def no_effect(name: str, scope: str, why: str,
              parse: Callable[[str], Any] | None = None) -> Option:
    """An stunnel option with no meaning for tlswrap: accepted (its value still checked by
    ``parse``), stored nowhere, and noted by ``tlswrap check``."""
    return Option(name, scope, f"_{name.lower()}", parse or parse_text,
                  note=f"{name}: no effect: {why}")


def refused(why: str) -> Callable[[str], Any]:
    """A parser for an stunnel option tlswrap cannot honour: every value is an error."""
    def parse(value: str) -> Any:
        raise ValueError(why)
    return parse


_NO_RANDOM = "OpenSSL seeds itself from the kernel (getrandom(2)); no seed file or EGD is read"
_GUI = "a Windows GUI option"
_CONNECT_ONLY = ("belongs to protocol = connect (through an HTTP proxy), which tlswrap does not "
                 "speak; it is a mail STARTTLS proxy (protocol = imap, pop3 or smtp)")
_ENGINE = ("hardware engines and providers are not supported: keys and certificates are read "
           "from PEM files")


OPTIONS: dict[str, Option] = {o.name.lower(): o for o in [
    Option("foreground", "global", "foreground", parse_foreground),
    Option("pid", "global", "pid", lambda v: v or None),
    Option("output", "global", "output", parse_text),
    Option("syslog", "global", "syslog", parse_bool),
    Option("logFormat", "global", "log_format", parse_choice("text", "json")),
    Option("syslogAddress", "global", "syslog_address", parse_syslog_address),
    Option("debug", "global", "debug", parse_debug),
    Option("hostsAllow", "global", "hosts_allow", parse_text),
    Option("hostsDeny", "global", "hosts_deny", parse_text),
    Option("setuid", "global", "setuid", parse_id("user")),
    Option("setgid", "global", "setgid", parse_id("group")),
    Option("workers", "global", "workers", parse_workers),
    Option("TIMEOUTdrain", "global", "timeout_drain", parse_seconds),
    Option("maxHandshakes", "global", "max_handshakes", parse_positive_int),
    Option("metrics", "global", "metrics", parse_metrics_address),
    Option("accept", "service", "accept", parse_accept),
    Option("connect", "service", "connect", parse_connect, repeat=True),
    Option("exec", "service", "exec", parse_text),
    Option("execArgs", "service", "exec_args", parse_args),
    Option("cert", "service", "cert", parse_text),
    Option("key", "service", "key", parse_text),
    Option("CAfile", "service", "ca_file", parse_text),
    Option("ciphers", "service", "ciphers", parse_text),
    Option("ciphersuites", "service", "ciphersuites", parse_text),
    Option("curves", "service", "curves", parse_text),
    Option("sslVersionMin", "service", "version_min", parse_version),
    Option("sslVersionMax", "service", "version_max", parse_version),
    Option("TIMEOUTbusy", "service", "timeout_busy", parse_seconds),
    Option("TIMEOUTclose", "service", "timeout_close", parse_seconds),
    Option("TIMEOUTconnect", "service", "timeout_connect", parse_seconds),
    Option("TIMEOUTidle", "service", "timeout_idle", parse_seconds),
    Option("libwrap", "service", "libwrap", parse_bool),
    Option("sslVersion", "service", "version_min", parse_version, also=("version_max",)),
    Option("options", "service", "ssl_options", ssloptions.parse, repeat=True),
    Option("socket", "service", "socket_options", sockopts.parse, repeat=True),
    Option("sessionCacheTimeout", "service", "session_timeout", parse_session_timeout),
    Option("protocol", "service", "protocol", parse_protocol),
    Option("starttls", "service", "starttls", parse_starttls),
    Option("proxyProtocol", "service", "proxy_protocol", parse_proxy_version),
    Option("acceptProxy", "service", "accept_proxy", parse_accept_proxy),
    Option("proxyTrusted", "service", "proxy_trusted", parse_networks),
    Option("local", "service", "local", parse_host),
    Option("failover", "service", "failover", parse_choice("rr", "prio")),
    Option("delay", "service", "delay", parse_bool),
    Option("transparent", "service", "transparent", parse_transparent),
    Option("service", "global", "service", parse_service_name),
    Option("chroot", "global", "chroot", parse_absolute_path),
    Option("setEnv", "global", "set_env", parse_set_env, repeat=True),
    Option("log", "global", "log_mode", parse_choice("append", "overwrite")),
    Option("sessionResume", "service", "session_resume", parse_bool),
    Option("ident", "service", "ident", parse_text),
    Option("pty", "service", "pty", parse_bool),
    Option("retry", "service", "retry", parse_retry),
    Option("PSKsecrets", "service", "psk_secrets", parse_text),
    Option("PSKidentity", "service", "psk_identity", parse_text),
    Option("protocolHost", "service", "protocol_host", parse_host),
    Option("protocolAuthentication", "service", "protocol_authentication",
           parse_protocol_authentication),
    Option("protocolUsername", "service", "protocol_username", parse_text),
    Option("protocolPassword", "service", "protocol_password", parse_secret, secret=True),
    # stunnel's protocol = connect (an HTTP proxy) only: its NTLM domain, an extra header
    Option("protocolDomain", "service", "_protocoldomain", refused(_CONNECT_ONLY)),
    Option("protocolHeader", "service", "_protocolheader", refused(_CONNECT_ONLY),
           secret=True),  # it may carry a Proxy-Authorization
    Option("proxyTLVs", "service", "proxy_tlvs", parse_proxy_tlvs),
    Option("reset", "service", "reset", parse_bool),
    Option("logId", "service", "log_id", parse_choice("sequential", "unique", "thread",
                                                      "process")),
    # stunnel options with no meaning here: accepted, and noted by `tlswrap check`
    no_effect("RNDbytes", "global", _NO_RANDOM, parse_positive_int),
    no_effect("RNDfile", "global", _NO_RANDOM),
    no_effect("RNDoverwrite", "global", _NO_RANDOM, parse_bool),
    no_effect("EGD", "global", _NO_RANDOM),
    no_effect("iconActive", "global", _GUI),
    no_effect("iconError", "global", _GUI),
    no_effect("iconIdle", "global", _GUI),
    no_effect("taskbar", "global", _GUI, parse_bool),
    no_effect("stack", "service", "tlswrap starts no thread per connection",
              parse_positive_int),
    no_effect("sessionCacheSize", "service", "OpenSSL's own bound on cached sessions (20480) "
              "applies; tlswrap cannot change it", parse_count),
    no_effect("sessiond", "service", "there is no session cache server; clients resume with "
              "session tickets", parse_connect),
    Option("compression", "global", "_compression", refused(
        "compression leaks what it compresses (CRIME): tlswrap never enables it; remove the "
        "line (stunnel takes only deflate or zlib here, never none)")),
    no_effect("engine", "global", "only 'auto' is accepted, and tlswrap uses no engine",
              parse_only("auto", _ENGINE)),
    no_effect("provider", "global", "OpenSSL's default provider is always used",
              parse_only("default", _ENGINE)),
    Option("providerParameter", "global", "_providerparameter", refused(_ENGINE)),
    Option("engineCtrl", "global", "_enginectrl", refused(_ENGINE)),
    Option("engineDefault", "global", "_enginedefault", refused(_ENGINE)),
    Option("engineId", "service", "_engineid", refused(_ENGINE)),
    Option("engineNum", "service", "_enginenum", refused(_ENGINE)),
    Option("CAengine", "service", "_caengine", refused(_ENGINE)),
    Option("config", "service", "_config", refused(
        "OpenSSL configuration commands (SSL_CONF_cmd) are not supported: use the matching "
        "option (ciphers, curves, options, sslVersionMin...)")),
    Option("alpn", "service", "alpn", parse_alpn),
    Option("sni", "service", "sni", parse_sni, repeat=True),
    Option("sniStrict", "service", "sni_strict", parse_bool),
    Option("verify", "service", "verify", parse_verify_level),
    Option("verifyChain", "service", "verify_chain", parse_bool),
    Option("verifyPeer", "service", "verify_peer", parse_bool),
    Option("requireCert", "service", "require_cert", parse_bool),
    Option("CApath", "service", "ca_path", parse_text),
    Option("CAstore", "service", "ca_store", parse_ca_store),
    Option("CRLfile", "service", "crl_file", parse_text),
    Option("CRLpath", "service", "crl_path", parse_text),
    Option("checkHost", "service", "check_host", parse_check_host, repeat=True),
    Option("checkEmail", "service", "check_email", parse_email, repeat=True),
    Option("checkIP", "service", "check_ip", parse_ip, repeat=True),
    Option("redirect", "service", "redirect", parse_connect, repeat=True),
    Option("client", "service", "client", parse_bool),
    Option("OCSPstaple", "service", "ocsp_staple", parse_ocsp_staple),
    Option("OCSPaia", "service", "ocsp_aia", parse_bool),
    Option("OCSP", "service", "ocsp_url", parse_http_url),
    Option("OCSPflag", "service", "ocsp_flags", parse_ocsp_flag, repeat=True),
    Option("OCSPnonce", "service", "ocsp_nonce", parse_bool),
    Option("OCSPrequire", "service", "ocsp_require", parse_bool),
    Option("TIMEOUTocsp", "service", "timeout_ocsp", parse_seconds),
    Option("securityLevel", "service", "security_level", parse_security_level),
    Option("maxConnections", "service", "max_connections", parse_positive_int),
    Option("maxClientConnections", "service", "max_client_connections", parse_positive_int),
    Option("maxClientRate", "service", "max_client_rate", parse_rate),
    Option("clientIPv6Prefix", "service", "client_ipv6_prefix", parse_ipv6_prefix),
    # stunnel options accepted with the value tlswrap implements, so files carrying them work
    Option("renegotiation", "service", "_renegotiation", parse_bool_only(
        False, "tlswrap never allows renegotiation (a client-driven CPU drain)")),
    Option("fips", "global", "_fips", parse_bool_only(
        False, "FIPS mode is not supported")),
]}
# stunnel options tlswrap knows but cannot do yet: the error says why instead of "unknown"
NOT_YET: dict[str, str] = {name.lower(): f"{name}: not supported yet: {why}" for name, why in [
    ("ticketKeySecret", "setting session ticket keys needs OpenSSL calls (SSL_CTX_ctrl, a "
     "ticket-key callback) that the cryptography/pyOpenSSL binding does not expose; tickets "
     "are shared by every worker of one daemon (see README, Session tickets)"),
    ("ticketMacSecret", "it goes with ticketKeySecret (see that line's message)"),
]}
# stunnel's older spellings, which its options.c still takes for the same option
OPTIONS["curve"] = OPTIONS["curves"]
OPTIONS["session"] = OPTIONS["sessioncachetimeout"]


def setter(lines: dict[str, int], attr: str) -> str | None:
    """The option, of those in ``lines``, that set field ``attr`` last (stunnel's spelling)."""
    setters = [(line, opt.name) for key, opt in OPTIONS.items()
               if attr in (opt.attr, *opt.also) and (line := lines.get(key)) is not None]
    return max(setters)[1] if setters else None
