"""tcp_wrappers access control, hosts_access(5) and hosts_options(5) as Debian's tcpd 7.6.

The engine (parse, decide, expand) is imported at once; the file and resolver shell
(``files``: logging, socket, ipaddress, threading) and the checker (``lint``) only when one of
their names is first used (PEP 562), so that the inetd fast path, which decides with the
engine alone, does not pay for them on every connection.
"""

from tlswrap.tcpwrappers.decide import ACLEXEC_FAILED, Decision, decide
from tlswrap.tcpwrappers.expand import expand_percent
from tlswrap.tcpwrappers.options import Option, OptionSpec, Severity, parse_options
from tlswrap.tcpwrappers.request import PARANOID, UNKNOWN, Request
from tlswrap.tcpwrappers.rules import Rule, Rules, parse_hosts

TYPE_CHECKING = False  # typing costs milliseconds to import; mypy reads the names below
if TYPE_CHECKING:
    from tlswrap.tcpwrappers.decide import OnOption
    from tlswrap.tcpwrappers.files import (
        HostsFiles,
        banner_path_error,
        check_option,
        find_inet_addr,
        hostname_for,
        read_hosts,
        read_patterns,
    )
    from tlswrap.tcpwrappers.lint import Emit, Services, System, lint_rule, rule_listing

_LAZY = {
    **dict.fromkeys(("HostsFiles", "banner_path_error", "check_option", "find_inet_addr",
                     "hostname_for", "read_hosts", "read_patterns"), "files"),
    **dict.fromkeys(("Emit", "Services", "System", "lint_rule", "rule_listing"), "lint"),
}

__all__ = [
    "ACLEXEC_FAILED", "PARANOID", "UNKNOWN", "Decision", "Emit", "HostsFiles", "OnOption",
    "Option", "OptionSpec", "Request", "Rule", "Rules", "Services", "Severity", "System",
    "banner_path_error", "check_option", "decide", "expand_percent", "find_inet_addr",
    "hostname_for", "lint_rule", "parse_hosts", "parse_options", "read_hosts", "read_patterns",
    "rule_listing",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
