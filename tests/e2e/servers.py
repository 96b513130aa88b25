"""Real mail servers for the end-to-end tests, each started from a configuration written into
a scratch folder, listening on free loopback ports, and stopped with its whole process group.

The servers drop privileges for their workers (Dovecot's login and auth processes, Postfix's
daemons, Cyrus as the cyrus user), and those users must reach the configuration, the sockets
and the maildirs. pytest's own temporary folders sit under a 0700 root-owned folder, so each
server gets a 0755 scratch folder of its own in the system's temporary directory, removed when
the test ends. Nothing is read from or written to the system's /etc configuration, and no
system service is involved.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from conftest import EXAMPLES, free_port, port_open, wait_for

MAIL_USER = "nobody"  # owns the maildirs; Dovecot and Postfix deliver and read as this user
PASSWORD = "secret-Pa55"
# Dovecot's auth socket for Postfix's SMTP AUTH, in the scratch folder both share
SASL_SOCKET = "sasl-auth"


def adapt(path: Path, subs: Iterable[tuple[str, str]]) -> str:
    """The text of an examples/ file with test ports and paths put in: every ``old`` must be
    there, so an example that drifts from the tests fails them."""
    text = path.read_text()
    for old, new in subs:
        assert old in text, f"{path.name} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def make_scratch() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tlswrap-e2e-"))
    root.chmod(0o755)
    return root


def mail_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


class ProcessGroup:
    """A server started in a session of its own; ``stop`` ends the whole group."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, graceful: Callable[[], object] | None = None) -> None:
        if graceful is not None and self.alive():
            graceful()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; its children may linger a moment
            try:
                wait_for(lambda: not group_members(self.proc.pid), 10, "the process group")
                break
            except AssertionError:
                continue
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._log.close()


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def wait_ports(server: ProcessGroup, ports: Iterable[tuple[str, int]], what: str,
               log: Callable[[], str]) -> None:
    """Wait until the server listens on every port; if it does not, stop it and say why (the
    fixture never gets the object to stop)."""
    try:
        for host, port in ports:
            wait_for(lambda host=host, port=port: port_open(port, host) or not server.alive(),
                     20, f"{what} on {host}:{port}")
            if not server.alive():
                raise AssertionError(f"{what} exited {server.proc.returncode}:\n{log()}")
    except AssertionError:
        server.stop()
        raise


class Dovecot:
    """Dovecot with passwd-file users and maildirs, plaintext IMAP/POP3 listeners (plain and
    ``haproxy = yes``) from examples/server-side/dovecot-listeners.conf."""

    def __init__(self, root: Path, users: Iterable[str] = ("alice",), extra: str = ""):
        """``extra``: configuration put after everything else (e.g. a server-side snippet
        from examples/, with the test's values put in)."""
        self.root = root
        self.ports = {"imap": free_port(), "imap_proxy": free_port(),
                      "pop3": free_port(), "pop3_proxy": free_port()}
        self.mail = root / "mail"  # shared with a Postfix on the same root
        self.mail.mkdir(exist_ok=True)
        uid, gid = mail_ids()
        os.chown(self.mail, uid, gid)
        (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{PASSWORD}::::::\n"
                                             for user in users))
        listeners = adapt(EXAMPLES / "server-side" / "dovecot-listeners.conf", [
            ("port = 143\n", f"port = {self.ports['imap']}\n"),
            ("port = 10143\n", f"port = {self.ports['imap_proxy']}\n"),
            ("port = 110\n", f"port = {self.ports['pop3']}\n"),
            ("port = 10110\n", f"port = {self.ports['pop3_proxy']}\n"),
        ])
        (root / "listeners.conf").write_text(listeners)
        self.log_path = root / "dovecot.log"
        self.config = root / "dovecot.conf"
        self.config.write_text(f"""\
instance_name = tlswrap-e2e-{root.name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log_path}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
first_valid_uid = {uid}
last_valid_uid = {uid}
auth_mechanisms = plain login
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail}/%u
}}
mail_location = maildir:{self.mail}/%u
!include {root}/listeners.conf
""" + extra)
        self.server = ProcessGroup([dovecot_binary(), "-F", "-c", str(self.config)],
                                   root / "dovecot.out")
        wait_ports(self.server, [("127.0.0.1", p) for p in self.ports.values()], "dovecot",
                   self.log)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text + self.server.log_path.read_text(errors="replace")

    def maildir(self, user: str = "alice") -> Path:
        """The user's maildir (cur, new, tmp), made as the mail user."""
        uid, gid = mail_ids()
        box = self.mail / user
        for sub in ("", "cur", "new", "tmp"):
            (box / sub).mkdir(exist_ok=True)
            os.chown(box / sub, uid, gid)
        return box

    def deliver(self, message: bytes, user: str = "alice", name: str = "1.e2e") -> None:
        """Put a message in the user's maildir the way an MDA does (tmp, then rename)."""
        box = self.maildir(user)
        tmp = box / "tmp" / name
        tmp.write_bytes(message)
        os.chown(tmp, *mail_ids())
        tmp.rename(box / "new" / name)

    def logins(self, count: int = 1) -> list[re.Match[str]]:
        """The successful-login lines, once there are ``count`` (Dovecot's log process writes
        them a moment after the client hears OK)."""
        wait_for(lambda: len(dovecot_logins(self.log())) >= count, 10, "dovecot's login line")
        return dovecot_logins(self.log())

    def stop(self) -> None:
        self.server.stop()


def dovecot_sasl(root: Path) -> str:
    """examples/server-side/dovecot-sasl.conf with the auth socket in ROOT, for the ``extra``
    of a Dovecot whose passdb a Postfix on the same ROOT asks about SMTP AUTH."""
    return adapt(EXAMPLES / "server-side" / "dovecot-sasl.conf",
                 [("/var/spool/postfix/private/auth", str(root / SASL_SOCKET))])


def dovecot_binary() -> str:
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


# imap-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.2, lip=127.0.0.1, mpid=6686,
# secured, session=<...>   (dovecot's default login_log_format_elements)
LOGIN_LINE = re.compile(r"(?:imap|pop3)-login: Info: Login: user=<(?P<user>[^>]*)>, "
                        r"method=[^,]+, rip=(?P<rip>[^,]+), lip=(?P<lip>[^,]+), mpid=[^,]+"
                        r"(?P<flags>.*)")


def dovecot_logins(log: str) -> list[re.Match[str]]:
    """Dovecot's successful-login lines; ``flags`` holds the rest (", secured, session=...")."""
    return [m for line in log.splitlines() if (m := LOGIN_LINE.search(line))]


# The services every Postfix needs (master.cf.proto's, without chroot); the smtpd listeners
# come from examples/server-side/postfix-master.cf.
POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """Postfix from a scratch config_directory (``postfix -c DIR start-fg``): its own queue
    and data directories, a log file (maillog_file), loopback only, and virtual delivery of
    alice@example.test to ROOT/mail/alice/, the maildir a Dovecot on the same ROOT reads. Its
    submission service takes mail only after SMTP AUTH, which it asks that Dovecot about
    (started with ``dovecot_sasl(ROOT)``)."""

    def __init__(self, root: Path):
        self.root = root
        self.ports = {"submission": free_port(), "submission_proxy": free_port()}
        self.config_dir = root / "postfix"
        self.config_dir.mkdir()
        mail = root / "mail"
        mail.mkdir(exist_ok=True)
        uid, gid = mail_ids()
        os.chown(mail, uid, gid)
        self.log_path = root / "maillog"
        (root / "spool").mkdir()
        (root / "data").mkdir()
        postfix_user = pwd.getpwnam("postfix")
        os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        (self.config_dir / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {self.log_path}
maillog_file_prefixes = {root}
myhostname = mail.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
relayhost =
default_transport = error:this test Postfix delivers to example.test only
virtual_mailbox_domains = example.test
virtual_mailbox_base = {mail}
virtual_mailbox_maps = inline:{{ alice@example.test=alice/ }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
biff = no
""")
        smtpd = adapt(EXAMPLES / "server-side" / "postfix-master.cf", [
            ("127.0.0.1:587 ", f"127.0.0.1:{self.ports['submission']} "),
            ("127.0.0.1:10587 ", f"127.0.0.1:{self.ports['submission_proxy']} "),
            ("smtpd_sasl_path=private/auth", f"smtpd_sasl_path={root / SASL_SOCKET}"),
        ])
        (self.config_dir / "master.cf").write_text(POSTFIX_SERVICES + smtpd)
        # Postfix waits (in 0.3 s steps) until its configuration files are older than a
        # second, against reading a file still being written: these are complete.
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (time.time() - 5, time.time() - 5))
        self.server = ProcessGroup([postfix_binary(), "-c", str(self.config_dir), "start-fg"],
                                   root / "postfix.out")
        wait_ports(self.server, [("127.0.0.1", p) for p in self.ports.values()], "postfix",
                   self.log)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text + self.server.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.server.stop(lambda: subprocess.run(
            [postfix_binary(), "-c", str(self.config_dir), "stop"], timeout=30,
            capture_output=True, check=False))


def postfix_binary() -> str:
    return shutil.which("postfix") or "/usr/sbin/postfix"


# Debian's IMAP servers conflict with each other (each Provides and Conflicts imap-server), so
# cyrus-imapd cannot be installed beside dovecot-imapd: tests/run installs cyrus-common (the
# master process, tools and libraries) and unpacks the cyrus-imapd package's imapd here.
CYRUS_IMAPD = ["/usr/lib/cyrus/bin/imapd",
               "/var/cache/tlswrap-e2e/cyrus-imapd/usr/lib/cyrus/bin/imapd"]


def cyrus_imapd() -> str | None:
    return next((p for p in CYRUS_IMAPD if os.access(p, os.X_OK)), None)


class Cyrus:
    """Cyrus IMAP (cyrmaster in the foreground) with its imap service from
    examples/server-side/cyrus-services.conf, sasldb passwords and INBOX created at first login."""

    def __init__(self, root: Path, users: dict[str, str]):
        self.root = root
        self.port = free_port()
        for sub in ("config", "spool", "run"):
            (root / sub).mkdir()
        self.imapd_conf = root / "imapd.conf"
        self.imapd_conf.write_text(f"""\
configdirectory: {root}/config
partition-default: {root}/spool
servername: mail.example.test
allowplaintext: yes
sasl_mech_list: PLAIN LOGIN
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {root}/sasldb2
autocreate_quota: 0
lmtpsocket: {root}/run/lmtp
idlesocket: {root}/run/idle
notifysocket: {root}/run/notify
""")
        for user, password in users.items():
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", str(root / "sasldb2"),
                            "-u", "mail.example.test", user], input=password.encode(),
                           check=True, timeout=30)
        services = adapt(EXAMPLES / "server-side" / "cyrus-services.conf", [
            ('cmd="imapd"', f'cmd="{cyrus_imapd()} -C {self.imapd_conf}"'),
            ('listen="127.0.0.1:143"', f'listen="127.0.0.1:{self.port}"'),
        ])
        self.cyrus_conf = root / "cyrus.conf"
        self.cyrus_conf.write_text(
            f'START {{\n  recover cmd="ctl_cyrusdb -r -C {self.imapd_conf}"\n}}\n'
            + services + "EVENTS {\n}\nDAEMON {\n}\n")
        cyrus = pwd.getpwnam("cyrus")
        for path in [root / "config", root / "spool", root / "run", root / "sasldb2"]:
            os.chown(path, cyrus.pw_uid, cyrus.pw_gid)
        self.server = ProcessGroup(["cyrmaster", "-D", "-C", str(self.imapd_conf),
                                    "-M", str(self.cyrus_conf),
                                    "-p", str(root / "run" / "master.pid")],
                                   root / "cyrus.out")
        wait_ports(self.server, [("127.0.0.1", self.port)], "cyrus", self.log)

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.server.stop()
