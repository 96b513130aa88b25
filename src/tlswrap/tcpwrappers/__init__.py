"""tcp_wrappers access control, hosts_access(5) and hosts_options(5) as Debian's tcpd 7.6."""

from tlswrap.tcpwrappers.decide import ACLEXEC_FAILED, Decision, OnOption, decide
from tlswrap.tcpwrappers.expand import expand_percent
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
from tlswrap.tcpwrappers.options import Option, OptionSpec, Severity, parse_options
from tlswrap.tcpwrappers.request import PARANOID, UNKNOWN, Request
from tlswrap.tcpwrappers.rules import Rule, Rules, parse_hosts

__all__ = [
    "ACLEXEC_FAILED", "PARANOID", "UNKNOWN", "Decision", "Emit", "HostsFiles", "OnOption",
    "Option", "OptionSpec", "Request", "Rule", "Rules", "Services", "Severity", "System",
    "banner_path_error", "check_option", "decide", "expand_percent", "find_inet_addr",
    "hostname_for", "lint_rule", "parse_hosts", "parse_options", "read_hosts", "read_patterns",
    "rule_listing",
]
