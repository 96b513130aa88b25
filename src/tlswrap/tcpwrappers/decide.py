"""The verdict: hosts_access(5) access control over parsed rules, as Debian's tcpd 7.6.

Pure and I/O-free: everything that needs the outside world (name lookups, ``/path`` pattern
files, netgroups, user/group checks, banners, aclexec) is a function handed in and called only
when a rule needs it, so the matcher can run in a worker thread with the lookups bounded by a
timeout.

General theory of operation (tcpd's hosts_access.c, options.c):

* Access is granted when a rule of hosts.allow matches; otherwise denied when a rule of
  hosts.deny matches; otherwise granted. The first matching rule of a file decides.
* A file that cannot be read, or whose scan stops on an over-long or unterminated line, is an
  error: in hosts.allow the search goes on to hosts.deny, in hosts.deny access is denied.
* Only the deciding rule's options are evaluated, in order (hosts_options(5)); ``allow`` and
  ``deny`` override the file, and an error in an option denies (tcpd's tcpd_jump()).
* ``aclexec`` (Debian's patch to options.c and hosts_access.c): the command's status goes into
  one flag per decision (tcpd's global ``aclexec_matched``: set by a failing command, cleared
  only by a later command that exits 0). After the options of a matched rule have run, a set
  flag turns the match into "no match" for that file: in hosts.allow the search goes on to
  hosts.deny (later rules of hosts.allow are not consulted), in hosts.deny access is granted.
  The flag outlives the rule: after a failed aclexec in hosts.allow, a matching hosts.deny rule
  that has options (and no aclexec of its own that exits 0) does not match either, so access
  is granted; a hosts.deny rule without options still denies. ``allow``, ``deny`` and
  ``twist`` end the rule before the flag is looked at. The options that ran stay carried out
  (tcpd applied them to itself as they came), so they stay in ``Decision.options``.
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import SPACE
from tlswrap.tcpwrappers.expand import expand_percent
from tlswrap.tcpwrappers.patterns import Hooks, client_match, list_match, server_match
from tlswrap.tcpwrappers.record import Record
from tlswrap.tcpwrappers.rules import Note

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable

    from tlswrap.tcpwrappers.options import Option
    from tlswrap.tcpwrappers.patterns import ReadPatterns
    from tlswrap.tcpwrappers.request import Request
    from tlswrap.tcpwrappers.rules import Rule, Rules

    Warn = Callable[[str], None]
    OnOption = Callable[[Option, Warn], "str | None"]

__all__ = ["ACLEXEC_FAILED", "Decision", "OnOption", "decide"]

ACLEXEC_FAILED = "\0aclexec-failed"  # on_option result: the aclexec command exited non-zero


class Decision(Record):
    """The verdict and what decided it.

    ``verdict``: "granted" or "denied". ``file``/``line``: the deciding rule, or None when no
    rule matched. ``options``: the deciding rule's options that were processed, in order, with
    values expanded. ``delegated``: a ``twist`` was reached (tcpdmatch prints "delegated"; the
    daemon runs ``twist`` instead of the backend). ``error``: why access was denied by an error.
    ``log``: the lines tcpd would log in verbose mode (``matched:``, ``option:``, warnings).
    """

    __slots__ = _fields = ("verdict", "file", "line", "options", "delegated", "error", "log")
    verdict: str
    file: str | None
    line: int | None
    options: tuple[Option, ...]
    delegated: bool
    error: str | None
    log: tuple[str, ...]

    def __init__(self, verdict: str, file: str | None, line: int | None,
                 options: tuple[Option, ...] = (), delegated: bool = False,
                 error: str | None = None, log: tuple[str, ...] = ()) -> None:
        super().__init__(verdict, file, line, options, delegated, error, log)

    @property
    def granted(self) -> bool:
        return self.verdict == "granted"

    @property
    def access(self) -> str:
        """What tcpdmatch prints on its ``access:`` line."""
        return "delegated" if self.delegated else self.verdict

    def option(self, name: str) -> Option | None:
        """The last processed option called ``name`` (e.g. "twist"), or None."""
        found = [o for o in self.options if o.name == name]
        return found[-1] if found else None


class _Jump(Exception):
    """tcpd's longjmp out of option processing: the verdict is ``permit``."""

    def __init__(self, permit: bool):
        super().__init__(permit)
        self.permit = permit


class _Matcher:
    def __init__(self, request: Request, read_patterns: ReadPatterns | None,
                 netgroup: Callable[[str, str], bool] | None, on_option: OnOption | None,
                 log: Warn | None):
        self.r = request
        self.hooks = Hooks(read_patterns, netgroup, self.warn)
        self.on_option = on_option
        self.emit = log
        self.lines: list[str] = []
        self.where: tuple[str, int] | None = None
        self.rule: Rule | None = None
        self.options: list[Option] = []
        self.delegated = False
        self.error: str | None = None
        self.table_error: str | None = None
        self.aclexec_failed = False  # tcpd's aclexec_matched: see the module's docstring

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self.emit:
            self.emit(line)

    def diag(self, tag: str, msg: str) -> None:  # diag.c tcpd_diag()
        where = f"{self.where[0]}, line {self.where[1]}: " if self.where else ""
        self.log(f"{tag}: {where}{msg}")

    def warn(self, msg: str) -> None:
        self.diag("warning", msg)

    def jump(self, msg: str) -> None:
        self.diag("error", msg)
        self.error = msg
        raise _Jump(False)

    # hosts_access.c table_match(): True (YES), False (NO) or None (ERR)
    def table(self, rules: Rules) -> bool | None:
        if rules.open_error:
            self.where = None
            self.warn(rules.open_error)
            self.table_error = rules.open_error
            return None
        try:
            for e in rules.entries:
                self.where = (rules.filename, e.lineno)
                if isinstance(e, Note):
                    for m in e.messages:
                        self.warn(m)
                    if e.fatal:
                        self.table_error = e.messages[0]
                        return None
                elif (list_match(e.daemons, lambda t: server_match(t, self.r, self.hooks))
                      and list_match(e.clients, lambda t: client_match(t, self.r, self.hooks))):
                    self.rule = e
                    self.log(f"matched:  {rules.filename} line {e.lineno}")
                    return self.process_options(e)
            return False
        finally:
            self.where = None

    def process_options(self, rule: Rule) -> bool:
        """Run the rule's options in order; False when a failed aclexec undoes the match."""
        for spec in rule.options:
            value = spec.value
            if value is not None and spec.expand:
                value = expand_percent(value, self.r, self.warn).strip(SPACE)
            opt = spec.bind(value)
            self.log(f"option:   {spec.keyword} {value or ''}")
            self.options.append(opt)
            if spec.error:
                self.jump(spec.error)
            result = self.on_option(opt, self.warn) if self.on_option is not None else None
            if opt.name == "aclexec":
                self.aclexec_failed = result == ACLEXEC_FAILED
            if result and result != ACLEXEC_FAILED:
                self.jump(result)
            if opt.name == "allow":
                raise _Jump(True)
            if opt.name == "deny":
                raise _Jump(False)
            if opt.name == "twist":
                self.delegated = True
        if rule.option_error:
            self.jump(rule.option_error)
        if rule.options and self.aclexec_failed and not self.delegated:
            self.log("aclexec returned 1")
            self.rule = None
            return False
        return True


def decide(
    allow: Rules,
    deny: Rules,
    request: Request,
    *,
    read_patterns: ReadPatterns | None = None,
    netgroup: Callable[[str, str], bool] | None = None,
    on_option: OnOption | None = None,
    log: Warn | None = None,
) -> Decision:
    """hosts_access(): allow file, then deny file, then grant; options of the deciding rule.

    ``read_patterns(path)`` returns the whitespace-separated patterns of a ``/path`` list
    (raise FileNotFoundError for a missing file: no match; other OSError: warning, no match).
    ``netgroup(group, hostname)`` answers ``@group`` patterns (None: never a member, as tcpd
    without NIS). ``on_option(option, warn)`` runs once per processed option, in order
    (``warn`` logs a warning located at the rule); it returns None, an error message (tcpd's
    jump: access denied) or, for ``aclexec``, ACLEXEC_FAILED when the command did not exit 0
    (None: it did; without a hook an aclexec counts as exiting 0, as in tcpdmatch's dry run).
    Nothing is executed here: the hook runs aclexec; spawn and twist are only reported in
    ``Decision.options``. ``log(line)`` receives each verbose line as it
    is made (they are also in ``Decision.log``).
    """
    m = _Matcher(request, read_patterns, netgroup, on_option, log)
    try:
        if m.table(allow) is True:
            permit = True
        else:
            found = m.table(deny)
            permit = found is False
            if found is None:
                m.error = m.table_error
    except _Jump as jump:
        permit = jump.permit
    rule = m.rule
    return Decision(
        verdict="granted" if permit else "denied",
        file=rule.filename if rule else None,
        line=rule.lineno if rule else None,
        options=tuple(m.options),
        delegated=m.delegated,
        error=m.error,
        log=tuple(m.lines),
    )
