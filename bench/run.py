#!/usr/bin/env python3
"""Benchmark tlswrap against stunnel (the target) and hitch (the far reference) on loopback.

    python bench/run.py [--quick] [--rounds N] [--json OUT] [--only hs,rr,...] [--key ec|rsa|both]

General theory of operation:

- One plaintext backend (bench/backend.c, or backend.py without gcc) serves every candidate:
  a greeting line, then echo, or a bulk source/sink when the first line asks for it.
- The load client (bench/client.c, or pyclient.py without gcc/libssl-dev) is ours rather than
  wrk, because wrk resumes TLS sessions across reconnects: here "full" handshakes never offer a
  session and "resumed" ones always do, and the client reports its own CPU.
- Every trial starts a fresh proxy process, warms it, measures, stops it. Candidates are
  interleaved round by round (A B C, B C A, ...) so drift on a noisy machine hits all alike;
  the table shows medians over rounds and the ratio tlswrap/stunnel of those medians.
- Proxy CPU is the utime+stime delta over the proxy's whole process tree (its session), so CPU
  per handshake is the efficiency figure beside the rate a user sees. Memory is the VmRSS sum
  over that tree (PSS is recorded too).

Every wait is bounded and every process started here is stopped here (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = HERE / "build"
RESULTS = HERE / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

MEASURES = ["hs", "rr", "bulk", "idle", "max", "inetd", "workers", "metrics"]
MEASURE_ALIASES = {str(i + 1): m for i, m in enumerate(MEASURES)}


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run; --quick shrinks every one of them."""

    rounds: int = 5
    conc: int = 32              # concurrent clients for handshakes and round trips
    hs_seconds: float = 4.0
    rr_seconds: float = 4.0
    rr_size: int = 120          # an IMAP command line is 20-200 bytes
    warm_seconds: float = 0.5
    bulk_bytes: int = 400_000_000
    idle_conns: int = 3000
    idle_rounds: int = 3
    max_cap: int = 9000         # with 20,000 fds a relay needs 2 per connection
    max_rounds: int = 1
    inetd_seconds: float = 5.0
    inetd_rounds: int = 3
    inetd_rules: bool = True    # also with a hosts.allow rule (root: it edits /etc/hosts.allow)

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=1, hs_seconds=0.5, rr_seconds=0.5, warm_seconds=0.2,
                   bulk_bytes=8_000_000, idle_conns=100, idle_rounds=1, max_cap=200,
                   inetd_seconds=0.5, inetd_rounds=1, inetd_rules=False)


# --------------------------------------------------------------------------- processes

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the harness dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Procs:
    """Every process this harness starts, each in its own session so its tree can be found.

    Each also gets PR_SET_PDEATHSIG, so nothing outlives a harness that is killed outright.
    """

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent, **kw)
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM the process group we created, then SIGKILL after ``grace`` seconds."""
        if p.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # The leader is gone; children (hitch workers) may linger in its group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.live)):
            self.stop(p, grace=2.0)


PROCS = Procs()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()  # [0] is field 3 (state) of proc(5)


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid``: a proxy started by Procs and all its children."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat_fields(int(name))
            if st and int(st[3]) == sid and st[0] != "Z":
                pids.append(int(name))
    return pids


def tree_cpu(sid: int) -> float:
    """utime+stime (all threads) plus reaped children's, summed over the session, seconds."""
    ticks = 0
    for pid in session_pids(sid):
        st = _stat_fields(pid)
        if st:
            ticks += sum(int(x) for x in st[11:15])
    return ticks / CLK_TCK


def _status_kb(pid: int, field_name: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(sid: int) -> int:
    return sum(_status_kb(pid, "VmRSS") for pid in session_pids(sid))


def tree_pss_kb(sid: int) -> int:
    return sum(_status_kb(pid, "Pss", "smaps_rollup") for pid in session_pids(sid))


def fd_limit(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError):
        pass
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until a TCP connect to ``port`` succeeds; raises if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} after {timeout:.0f} s")


def read_line(p: subprocess.Popen[bytes], timeout: float) -> str:
    """One line from ``p``'s stdout within ``timeout`` (unbuffered reads, so select is exact)."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    buf = getattr(p, "_bench_buf", b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no output within {timeout:.0f} s")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"exited (status {p.poll()}) without output")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    p._bench_buf = rest  # type: ignore[attr-defined]
    return line.decode()


def tail(path: Path, n: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- build and certs

def build_tools(log: Callable[[str], None]) -> tuple[list[str], list[str], str]:
    """Compile client.c and backend.c into bench/build; fall back to the Python twins."""
    BUILD.mkdir(exist_ok=True)
    gcc = shutil.which("gcc") or shutil.which("cc")
    built = {}
    for name, libs in (("client", ["-lssl", "-lcrypto"]), ("backend", [])):
        src, out = HERE / f"{name}.c", BUILD / name
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            built[name] = True
            continue
        if gcc:
            r = subprocess.run([gcc, "-O2", "-Wall", "-o", str(out), str(src), *libs],
                               capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                built[name] = True
                continue
            log(f"note: cannot compile {name}.c ({r.stderr.strip().splitlines()[-1:]})")
        built[name] = False

    def tool(name: str, fallback: str) -> list[str]:  # the C program, or its Python stand-in
        return [str(BUILD / name)] if built[name] else [sys.executable, str(HERE / fallback)]

    client, backend = tool("client", "pyclient.py"), tool("backend", "backend.py")
    kind = "c" if built["client"] else "python (compressed ratios: install gcc and libssl-dev)"
    return client, backend, kind


@dataclass(frozen=True)
class CertSet:
    key_type: str
    cert: Path
    key: Path
    pem: Path  # key + cert, for hitch


def make_certs(workdir: Path, key_type: str) -> CertSet:
    """A self-signed certificate for 127.0.0.1 made with `openssl req`."""
    key, cert, pem = (workdir / f"{key_type}.{ext}" for ext in ("key", "crt", "pem"))
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    pem.write_bytes(key.read_bytes() + cert.read_bytes())
    os.chmod(key, 0o600)
    # hitch reads it as root before dropping to nobody; 0644 is harmless in a temp dir
    os.chmod(pem, 0o644)
    return CertSet(key_type, cert, key, pem)


# --------------------------------------------------------------------------- candidates

def conf_text(port: int | None, backend_port: int, certs: CertSet, workers: int = 1,
              section: bool = True, metrics: bool = False, libwrap: bool = False) -> str:
    """The same stunnel-format file for stunnel and tlswrap (no accept: inetd mode).

    For inetd mode both get stunnel's form without a [section] (stunnel 5.68 refuses a section
    there: "Each service must define two endpoints"); ``section`` picks the form.
    """
    # inetd: stderr is the connection (openbsd-inetd passes it as 0, 1 and 2): no foreground
    lines = (["foreground = yes"] if port is not None else []) + [
        "pid =", "syslog = no", "debug = warning"]
    if workers != 1:
        lines.append(f"workers = {workers}")
    if metrics:  # tlswrap's metrics endpoint on (counted per connection; nobody scrapes)
        lines.append(f"metrics = 127.0.0.1:{free_port()}")
    if libwrap:  # /etc/hosts.allow and hosts.deny: stunnel 5 applies them only when told to
        lines.append("libwrap = yes")  # (tlswrap by default; they hold no rule otherwise)
    if section:
        lines += ["[bench]"]
    if port is not None:
        lines.append(f"accept = 127.0.0.1:{port}")
    lines += [f"connect = 127.0.0.1:{backend_port}", f"cert = {certs.cert}", f"key = {certs.key}"]
    return "\n".join(lines) + "\n"


@dataclass
class Candidate:
    name: str                     # "tlswrap", "stunnel", "hitch", "tlswrap-w2"
    kind: str                     # "tlswrap" | "stunnel" | "hitch"
    base_cmd: list[str]
    workers: int = 1
    available: bool = True
    reason: str = ""
    inetd: bool = False           # has an inetd mode
    inetd_reason: str = ""
    version: str = ""
    metrics: bool = False         # tlswrap with metrics = HOST:PORT
    inetd_cmd: list[str] | None = None  # the inetd line's command, when not base_cmd
    python: str | None = None     # tlswrap's interpreter: the floor is measured on it

    def inetd_argv(self, backend_port: int, certs: CertSet, workdir: Path,
                   libwrap: bool = False) -> list[str]:
        """The command an inetd line runs for this candidate (tlswrap: its entry script)."""
        argv = self.argv(None, backend_port, certs, workdir, libwrap)
        return [*self.inetd_cmd, *argv[len(self.base_cmd):]] if self.inetd_cmd else argv

    def argv(self, port: int | None, backend_port: int, certs: CertSet, workdir: Path,
             libwrap: bool = False) -> list[str]:
        if self.kind == "hitch":
            assert port is not None
            user = ["--user=nobody"] if os.geteuid() == 0 else []
            return [*self.base_cmd, f"--backend=[127.0.0.1]:{backend_port}",
                    f"--frontend=[127.0.0.1]:{port}", f"--workers={self.workers}",
                    "--daemon=off", "--backlog=4096", "--log-level=1", *user, str(certs.pem)]
        tag = ("inetd" if port is None else str(port)) + ("-libwrap" if libwrap else "")
        path = workdir / f"{self.name}-{certs.key_type}-{tag}.conf"
        sectionless = port is None
        path.write_text(conf_text(port, backend_port, certs, self.workers, not sectionless,
                                  self.metrics, libwrap))
        return [*self.base_cmd, str(path)]


def find_candidates(args: argparse.Namespace) -> list[Candidate]:
    cands = []
    tw_env = os.environ.get("BENCH_TLSWRAP")
    venv_bin = REPO / ".venv" / "bin"
    if tw_env:
        tw_cmd, tw_py = tw_env.split(), None
    elif (venv_bin / "tlswrap").exists():
        tw_cmd, tw_py = [str(venv_bin / "tlswrap")], str(venv_bin / "python")
    else:
        tw_cmd, tw_py = [sys.executable, "-m", "tlswrap"], sys.executable
    tw = Candidate("tlswrap", "tlswrap", tw_cmd, inetd=True, python=tw_py or sys.executable)
    if tw_py:
        probe = "import tlswrap, tlswrap.daemon; print(tlswrap.__version__)"
        r = subprocess.run([tw_py, "-c", probe], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            tw.available, tw.inetd = False, False
            tw.reason = "not available: " + (r.stderr.strip().splitlines() or ["import failed"])[-1]
        else:
            tw.version = "tlswrap " + r.stdout.strip()
    cands.append(tw)
    st = shutil.which("stunnel4") or shutil.which("stunnel")
    c = Candidate("stunnel", "stunnel", [st] if st else [], inetd=True)
    if not st:
        c.available, c.inetd, c.reason = False, False, "not installed (apt-get install stunnel4)"
    else:
        r = subprocess.run([st, "-version"], capture_output=True, text=True, timeout=30)
        c.version = next((line for line in (r.stdout + r.stderr).splitlines()
                          if line.startswith("stunnel ")), "stunnel ?")
    cands.append(c)
    hi = shutil.which("hitch") or ("/usr/sbin/hitch" if os.path.exists("/usr/sbin/hitch") else None)
    c = Candidate("hitch", "hitch", [hi] if hi else [], workers=os.cpu_count() or 1,
                  inetd_reason="no inetd mode")
    if not hi:
        c.available, c.reason = False, "not installed (apt-get install hitch)"
    else:
        r = subprocess.run([hi, "--version"], capture_output=True, text=True, timeout=30)
        said = (r.stdout + r.stderr).strip()
        c.version = said.splitlines()[0] if said else "hitch"
    cands.append(c)
    if tw.available:
        cands.append(Candidate("tlswrap-w2", "tlswrap", tw_cmd, workers=2, version=tw.version))
        cands.append(Candidate("tlswrap-metrics", "tlswrap", tw_cmd, version=tw.version,
                               metrics=True))
    return cands


class Running:
    """A started proxy: its process, port, log, and the session id its tree shares."""

    def __init__(self, cand: Candidate, certs: CertSet, backend_port: int, workdir: Path) -> None:
        self.cand = cand
        self.port = free_port()
        self.log = workdir / f"{cand.name}-{certs.key_type}-{self.port}.log"
        argv = cand.argv(self.port, backend_port, certs, workdir)
        # open for the proxy's whole life, closed in stop()
        self.logf = open(self.log, "wb")  # noqa: SIM115
        self.proc = PROCS.start(argv, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        try:
            wait_port(self.port, self.proc, timeout=20)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{cand.name}: {exc}; log: {tail(self.log)}") from None

    @property
    def sid(self) -> int:
        return self.proc.pid

    def nprocs(self) -> int:
        return len(session_pids(self.sid))

    def stop(self) -> None:
        PROCS.stop(self.proc)
        self.logf.close()


# --------------------------------------------------------------------------- the client

@dataclass
class Env:
    settings: Settings
    client: list[str]
    backend: list[str]
    backend_port: int
    workdir: Path
    certs: CertSet
    log: Callable[[str], None]


def client_json(env: Env, args: list[str], timeout: float) -> dict[str, Any]:
    """Run the client once and return its last JSON line; a bounded wait."""
    r = subprocess.run([*env.client, *args], capture_output=True, text=True, timeout=timeout)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"client {args[0]} failed (status {r.returncode}): "
                           f"{r.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def hs_args(port: int, conc: int, seconds: float, resume: bool = False) -> list[str]:
    return ["hs", "--port", str(port), "--conc", str(conc), "--duration", str(seconds),
            "--warmup", "0", *(["--resume"] if resume else [])]


def warm(env: Env, port: int) -> None:
    """First connections pay lazy imports and allocations; keep them out of the window."""
    client_json(env, hs_args(port, 8, env.settings.warm_seconds), timeout=60)


# --------------------------------------------------------------------------- measures

def m_hs(env: Env, run: Running, resume: bool) -> dict[str, Any]:
    s = env.settings
    warm(env, run.port)
    c0 = tree_cpu(run.sid)
    r = client_json(env, hs_args(run.port, s.conc, s.hs_seconds, resume),
                    timeout=s.hs_seconds + 60)
    cpu = tree_cpu(run.sid) - c0
    n = max(r["count"], 1)
    return {"rate": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "errors": r["errors"], "resumed_frac": r.get("resumed", 0) / n,
            "proxy_cpu_ms": cpu * 1000 / n, "proxy_cores": cpu / max(r["wall_s"], 1e-9),
            "client_cores": r["client_cpu_frac"], "procs": run.nprocs(), "tls": r["tls"]}


def m_rr(env: Env, run: Running) -> dict[str, Any]:
    s = env.settings
    warm(env, run.port)
    args = ["rr", "--port", str(run.port), "--conc", str(s.conc), "--size", str(s.rr_size),
            "--duration", str(s.rr_seconds), "--warmup", "0"]
    c0 = tree_cpu(run.sid)
    r = client_json(env, args, timeout=s.rr_seconds + 60)
    cpu = tree_cpu(run.sid) - c0
    n = max(r["count"], 1)
    return {"rate": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "errors": r["errors"], "proxy_us": cpu * 1e6 / n,
            "proxy_cores": cpu / max(r["wall_s"], 1e-9), "client_cores": r["client_cpu_frac"],
            "procs": run.nprocs(), "tls": r["tls"]}


def m_bulk(env: Env, run: Running) -> dict[str, Any]:
    s = env.settings
    warm(env, run.port)
    out: dict[str, Any] = {}
    for d in ("down", "up"):
        c0 = tree_cpu(run.sid)
        r = client_json(env, ["bulk", "--port", str(run.port), "--dir", d,
                              "--bytes", str(s.bulk_bytes), "--timeout", "300"], timeout=330)
        cpu = tree_cpu(run.sid) - c0
        if not r.get("ok"):
            raise RuntimeError(f"bulk {d}: transfer failed or corrupted: {r}")
        out[f"{d}_mb_s"] = r["mb_s"]
        out[f"{d}_proxy_cpu_s_per_gb"] = cpu / (r["bytes"] / 1e9)
        out[f"{d}_client_cores"] = r["client_cpu_frac"]
    return out


def _hold(env: Env, run: Running, target: int, maxfail: int, timeout: float
          ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    p = PROCS.start([*env.client, "hold", "--port", str(run.port), "--target", str(target),
                     "--conc", "64", "--maxfail", str(maxfail), "--timeout", str(timeout),
                     "--conn-timeout", "15"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return p, json.loads(read_line(p, timeout + 30))


def _ask(p: subprocess.Popen[bytes], cmd: str, timeout: float) -> dict[str, Any]:
    assert p.stdin is not None
    p.stdin.write(cmd.encode() + b"\n")
    p.stdin.flush()
    return json.loads(read_line(p, timeout))


def _quit(p: subprocess.Popen[bytes]) -> None:
    try:
        assert p.stdin is not None
        p.stdin.write(b"quit\n")
        p.stdin.flush()
        p.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    PROCS.stop(p)


def m_idle(env: Env, run: Running) -> dict[str, Any]:
    s = env.settings
    warm(env, run.port)
    time.sleep(0.5)
    base = tree_rss_kb(run.sid)
    base_pss = tree_pss_kb(run.sid)
    p, r = _hold(env, run, s.idle_conns, maxfail=20, timeout=120)
    try:
        held = r["held"]
        if held < s.idle_conns:
            raise RuntimeError(f"held only {held} of {s.idle_conns} ({r['failed']} failed)")
        time.sleep(1.0)
        rss_fresh = tree_rss_kb(run.sid)
        ping = _ask(p, "ping", 60)
        time.sleep(1.0)
        rss, pss = tree_rss_kb(run.sid), tree_pss_kb(run.sid)
    finally:
        _quit(p)
    return {"kb_per_conn": (rss - base) / held, "kb_per_conn_fresh": (rss_fresh - base) / held,
            "pss_kb_per_conn": (pss - base_pss) / held, "held": held, "alive": ping["alive"],
            "base_rss_kb": base, "rss_kb": rss, "procs": run.nprocs()}


def m_max(env: Env, run: Running) -> dict[str, Any]:
    s = env.settings
    warm(env, run.port)
    p, r = _hold(env, run, s.max_cap, maxfail=20, timeout=300)
    try:
        ping = _ask(p, "ping", 60)
        check = _ask(p, "check", 30)
    finally:
        _quit(p)
    return {"held": r["held"], "failed": r["failed"], "open_s": r["open_s"],
            "alive": ping["alive"], "new_served": 1 if check["ok"] else 0,
            "cap": s.max_cap, "proxy_fd_limit": fd_limit(run.proc.pid)}


INETD = shutil.which("inetd") or "/usr/sbin/inetd"


def inetd_entry(cand: Candidate, workdir: Path) -> None:
    """tlswrap's inetd lines run the entry script ``tlswrap inetd-script`` writes (python
    -IS, the fastest start the README documents); BENCH_TLSWRAP commands run as given."""
    if cand.kind != "tlswrap" or cand.inetd_cmd is not None or os.environ.get("BENCH_TLSWRAP"):
        return
    script = workdir / "tlswrap-inetd"
    r = subprocess.run([cand.python or sys.executable, "-m", "tlswrap", "inetd-script",
                        str(script)], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        cand.inetd_cmd = [str(script)]


def _children_cpu_s(pid: int) -> float:
    """CPU (user + system) of the reaped children of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def floor_ms(python: str, flags: list[str], runs: int) -> dict[str, float]:
    """Wall p50 and CPU per run of ``python FLAGS -c pass``: the interpreter's own start."""
    walls = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, *flags, "-c", "pass"], check=True, timeout=60)
        walls.append((time.perf_counter() - t0) * 1000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000 / runs
    return {"p50_ms": statistics.median(walls), "cpu_ms": cpu}


HOSTS_ALLOW = "/etc/hosts.allow"
# What the rules measure puts in hosts.allow: rules that do not match first (a net/mask, a
# daemon of its own, an option), then the one that grants the bench's client. hosts.deny is
# left as it is: the grant comes first.
BENCH_HOSTS_ALLOW = """\
# written by tlswrap's bench/run.py (inetd with rules); the file it replaced is put back
sshd: 10.0.0.0/255.0.0.0
ALL: 192.0.2.0/255.255.255.0: DENY
ALL: 127.0.0.1
"""


@contextlib.contextmanager
def bench_hosts_allow() -> Iterator[None]:
    """/etc/hosts.allow holds BENCH_HOSTS_ALLOW for the block, then what it held before
    (stunnel's libwrap reads no other file). Root only."""
    if os.geteuid() != 0 or not os.path.exists(INETD):
        raise RuntimeError("needs root and openbsd-inetd: stunnel's libwrap reads only "
                           f"{HOSTS_ALLOW}, which this edits for the measure")
    path = Path(HOSTS_ALLOW)
    before = path.read_bytes() if path.exists() else None
    path.write_text(BENCH_HOSTS_ALLOW)
    try:
        yield
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)


def m_inetd_rules(env: Env, cand: Candidate) -> dict[str, Any]:
    """``m_inetd`` with ``libwrap = yes`` and a rule in hosts.allow granting the client: both
    wrappers parse the rules and decide per connection."""
    with bench_hosts_allow():
        return m_inetd(env, cand, libwrap=True)


def m_inetd(env: Env, cand: Candidate, libwrap: bool = False) -> dict[str, Any]:
    """Connect-to-greeting through a fresh wrapper process per connection, started by the
    real openbsd-inetd when it is installed and this runs as root (else inetd_emu.py); the
    CPU per connection is what the inetd's reaped children used over the window. For
    tlswrap, the interpreter's bare start (python -IS -c pass, and python -c pass) is
    measured right after, in the same round (not with ``libwrap``: the same floor)."""
    s = env.settings
    inetd_entry(cand, env.workdir)
    argv = cand.inetd_argv(env.backend_port, env.certs, env.workdir, libwrap)
    log = env.workdir / f"inetd-{cand.name}-{env.certs.key_type}{'-libwrap' * libwrap}.log"
    real = os.path.exists(INETD) and os.geteuid() == 0
    with open(log, "ab") as logf:
        if real:
            port = free_port()
            conf = log.with_suffix(".conf")
            # nowait.N: openbsd-inetd stops a service started more than 256 times a minute
            # (its default), which these rates pass; stunnel and tlswrap get the same bound
            conf.write_text(f"127.0.0.1:{port} stream tcp nowait.100000 root {argv[0]} "
                            f"{' '.join(argv)}\n")
            server = PROCS.start([INETD, "-d", str(conf)], stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=logf)
            wait_port(port, server, 20)
        else:
            server = PROCS.start([sys.executable, str(HERE / "inetd_emu.py"), "--", *argv],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf)
            port = int(read_line(server, 20).split()[1])
    try:
        client_json(env, hs_args(port, 1, 0.3), timeout=60)  # page cache, .pyc files
        time.sleep(0.3)
        cpu0 = _children_cpu_s(server.pid)
        r = client_json(env, hs_args(port, 1, s.inetd_seconds), timeout=s.inetd_seconds + 60)
        time.sleep(0.5)  # the last children reaped
        cpu = _children_cpu_s(server.pid) - cpu0
    finally:
        PROCS.stop(server)
    if r["count"] == 0:
        raise RuntimeError(f"no greeting in inetd mode; log: {tail(log)}")
    if r["errors"] > r["count"] / 100:  # refused or cut connections: the figures mean nothing
        raise RuntimeError(f"{r['errors']} failed connections for {r['count']} served; "
                           f"log: {tail(log)}")
    m = {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "rate": r["rate"],
         "errors": r["errors"], "client_cores": r["client_cpu_frac"],
         "cpu_ms": cpu * 1000 / (r["count"] + r["errors"]),
         "inetd": "openbsd-inetd" if real else "inetd_emu.py", "over_floor_ms": r["p50_ms"]}
    if cand.kind == "tlswrap" and not libwrap:
        runs = max(10, min(100, r["count"]))
        bare = floor_ms(cand.python or sys.executable, ["-IS"], runs)
        site = floor_ms(cand.python or sys.executable, [], runs)
        m.update(floor_ms=bare["p50_ms"], floor_cpu_ms=bare["cpu_ms"],
                 floor_site_ms=site["p50_ms"], over_floor_ms=r["p50_ms"] - bare["p50_ms"])
    return m


# --------------------------------------------------------------------------- rounds

@dataclass
class Plan:
    """Which candidates run which measure, how many rounds, for which key types."""

    measure: str
    cands: list[Candidate]
    rounds: int
    keys: list[str]
    fn: Callable[[Env, Any], dict[str, Any]]
    needs_proxy: bool = True


@dataclass
class Results:
    trials: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str, measure: str, cand: str, metric: str) -> list[float]:
        return [t["metrics"][metric] for t in self.trials
                if t["key"] == key and t["measure"] == measure and t["cand"] == cand
                and t.get("ok") and isinstance(t["metrics"].get(metric), (int, float))]


def run_plan(env_for_key: dict[str, Env], plan: Plan, results: Results,
             log: Callable[[str], None]) -> None:
    for key in plan.keys:
        env = env_for_key[key]
        cands = list(plan.cands)
        for rnd in range(plan.rounds):
            k = rnd % len(cands) if cands else 0
            order = cands[k:] + cands[:k]  # A B C, B C A, ...: no candidate always goes first
            for cand in order:
                t0 = time.monotonic()
                trial: dict[str, Any] = {"key": key, "measure": plan.measure,
                                         "round": rnd + 1, "cand": cand.name}
                try:
                    if plan.needs_proxy:
                        run = Running(cand, env.certs, env.backend_port, env.workdir)
                        try:
                            trial["metrics"] = plan.fn(env, run)
                        finally:
                            run.stop()
                    else:
                        trial["metrics"] = plan.fn(env, cand)
                    trial["ok"] = True
                except Exception as exc:  # a failed trial is a result, not the end of the run
                    trial["ok"] = False
                    trial["error"] = f"{type(exc).__name__}: {exc}"
                    trial["metrics"] = {}
                trial["seconds"] = round(time.monotonic() - t0, 2)
                results.trials.append(trial)
                log(f"  [{key} {plan.measure} r{rnd + 1}] {cand.name:10s} "
                    + (_brief(trial["metrics"]) if trial["ok"] else "FAILED " + trial["error"]))


def _brief(m: dict[str, Any]) -> str:
    keys = ["rate", "p99_ms", "proxy_cpu_ms", "down_mb_s", "up_mb_s", "kb_per_conn", "held",
            "new_served", "p50_ms"]
    return " ".join(f"{k}={m[k]:.4g}" for k in keys if isinstance(m.get(k), (int, float)))


# --------------------------------------------------------------------------- table

@dataclass(frozen=True)
class Row:
    measure: str
    metric: str
    label: str
    unit: str = ""
    op: str = ""         # ">=" or "<=" when there is a target ratio
    target: float | None = None
    note: str = ""
    ratio: bool = True   # False where tlswrap/stunnel means nothing (the client's own CPU)


ROWS = [
    Row("hs_full", "rate", "1 new TLS conns/s, full handshakes", "/s", ">=", 1.5),
    Row("hs_full", "proxy_cpu_ms", "  proxy CPU per full handshake", "ms"),
    Row("hs_full", "p99_ms", "  connect-to-greeting p99", "ms"),
    Row("hs_full", "client_cores", "  client's own CPU", "cores", ratio=False),
    Row("hs_resumed", "rate", "  resumed handshakes/s", "/s"),
    Row("hs_resumed", "proxy_cpu_ms", "  proxy CPU per resumed handshake", "ms"),
    Row("rr", "rate", "2 kept-alive round trips/s", "/s", ">=", 1.0),
    Row("rr", "p50_ms", "  round trip p50", "ms"),
    Row("rr", "p99_ms", "  round trip p99", "ms", "<=", 1.0),
    Row("rr", "proxy_us", "  proxy CPU per round trip", "us"),
    Row("rr", "client_cores", "  client's own CPU", "cores", ratio=False),
    Row("bulk", "down_mb_s", "3 bulk backend->client", "MB/s", ">=", 1.0),
    Row("bulk", "up_mb_s", "  bulk client->backend", "MB/s", ">=", 1.0),
    Row("bulk", "down_proxy_cpu_s_per_gb", "  proxy CPU per GB down", "s"),
    Row("bulk", "up_proxy_cpu_s_per_gb", "  proxy CPU per GB up", "s"),
    Row("idle", "kb_per_conn", "4 memory per idle TLS conn (RSS)", "KB", "<=", 1 / 3),
    Row("idle", "pss_kb_per_conn", "  same, PSS", "KB"),
    Row("max", "held", "5 concurrent conns held", ""),
    Row("max", "new_served", "  a new client served then", "yes=1"),
    Row("inetd", "p50_ms", "6 inetd connect-to-greeting p50", "ms", "<=", 3.0),
    Row("inetd", "p99_ms", "  inetd connect-to-greeting p99", "ms"),
    Row("inetd", "over_floor_ms", "  p50 minus python -IS start", "ms", "<=", 2.0),
    Row("inetd", "cpu_ms", "  CPU per inetd connection", "ms", "<=", 3.0),
    Row("inetd", "floor_ms", "  floor: python -IS -c pass p50", "ms", ratio=False),
    Row("inetd", "floor_cpu_ms", "  floor: its CPU", "ms", ratio=False),
    Row("inetd", "floor_site_ms", "  floor: python -c pass p50", "ms", ratio=False),
    Row("inetd_rules", "p50_ms", "  hosts.allow rules: p50", "ms", "<=", 3.0),
    Row("inetd_rules", "p99_ms", "  hosts.allow rules: p99", "ms"),
    Row("inetd_rules", "cpu_ms", "  hosts.allow rules: CPU per conn", "ms", "<=", 3.0),
    Row("hs_full", "rate", "7 workers=2: full handshakes/s", "/s", note="w2"),
    Row("hs_resumed", "rate", "  workers=2: resumed handshakes/s", "/s", note="w2"),
    Row("hs_resumed", "resumed_frac", "  workers=2: share actually resumed", "", note="w2"),
    Row("rr", "rate", "  workers=2: round trips/s", "/s", note="w2"),
    Row("hs_full", "rate", "8 metrics on: full handshakes/s", "/s", note="metrics"),
    Row("hs_full", "proxy_cpu_ms", "  metrics on: proxy CPU per full handshake", "ms",
        note="metrics"),
    Row("rr", "rate", "  metrics on: round trips/s", "/s", note="metrics"),
    Row("rr", "proxy_us", "  metrics on: proxy CPU per round trip", "us", note="metrics"),
]
VARIANTS = {"w2": ("tlswrap-w2", "w2/w1"), "metrics": ("tlswrap-metrics", "on/off")}


def _med(vals: list[float]) -> float | None:
    return statistics.median(vals) if vals else None


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def summarize(results: Results, keys: list[str], cands: dict[str, Candidate],
              settings: Settings) -> list[dict[str, Any]]:
    out = []
    for key in keys:
        for row in ROWS:
            if not any(t["key"] == key and t["measure"] == row.measure for t in results.trials):
                continue
            tw_name = VARIANTS[row.note][0] if row.note else "tlswrap"
            if row.note and not results.values(key, row.measure, tw_name, row.metric):
                continue
            tw = _med(results.values(key, row.measure, tw_name, row.metric))
            st = _med(results.values(key, row.measure, "stunnel", row.metric))
            hi = _med(results.values(key, row.measure, "hitch", row.metric))
            ratio = tw / st if tw is not None and st and row.ratio else None
            entry: dict[str, Any] = {"key": key, "measure": row.measure, "metric": row.metric,
                                     "label": row.label.strip(), "unit": row.unit,
                                     "tlswrap": tw, "stunnel": st, "hitch": hi, "ratio": ratio,
                                     "target": None, "met": None}
            if row.note:  # a variant of tlswrap, compared with the plain one
                w1 = _med(results.values(key, row.measure, "tlswrap", row.metric))
                entry["target"] = f"{VARIANTS[row.note][1]} {_fmt(tw / w1) if tw and w1 else '-'}x"
                entry["hitch"] = None
            elif row.op and row.target is not None:
                entry["target"] = f"{row.op} {row.target:.2g}x"
                if ratio is not None:
                    entry["met"] = ratio >= row.target if row.op == ">=" else ratio <= row.target
            elif row.measure == "max" and row.metric == "held":
                entry["target"] = f"= cap {settings.max_cap}"
                served = _med(results.values(key, "max", "tlswrap", "new_served"))
                if tw is not None:
                    entry["met"] = tw >= settings.max_cap and served == 1
            if tw is None and not cands["tlswrap"].available:
                entry["tlswrap"] = "n/a"
            out.append(entry)
    return out


def print_table(summary: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    head = f"{'key':4s} {'measure':38s} {'unit':6s} {'tlswrap':>9s} {'stunnel':>9s} " \
           f"{'ratio':>6s} {'hitch':>9s}  {'target':11s} met?"
    out(head)
    out("-" * len(head))
    for e in summary:
        tw = e["tlswrap"] if isinstance(e["tlswrap"], str) else _fmt(e["tlswrap"])
        met = {True: "yes", False: "NO", None: ""}[e["met"]]
        ratio = f"{e['ratio']:.2f}" if e["ratio"] is not None else "-"
        label = e["label"]
        indent = "" if label[0].isdigit() else "  "
        out(f"{e['key'].upper():4s} {(indent + label)[:38]:38s} {e['unit'][:6]:6s} {tw:>9s} "
            f"{_fmt(e['stunnel']):>9s} {ratio:>6s} {_fmt(e['hitch']):>9s}  "
            f"{(e['target'] or ''):11s} {met}")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny run (seconds), for the smoke test")
    ap.add_argument("--rounds", type=int, help="rounds for measures 1-3 (default 5, quick 1)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(MEASURES)} (or 1-8)")
    ap.add_argument("--key", choices=["ec", "rsa", "both"], default=None,
                    help="certificate key type (default both; quick: ec)")
    ap.add_argument("--no-hitch", action="store_true", help="leave hitch out")
    ap.add_argument("--idle-conns", type=int, help="connections held for measure 4 (default 3000)")
    ap.add_argument("--max-cap", type=int, help="cap for measure 5 (default 9000)")
    a = ap.parse_args(argv)
    names = [m.strip() for m in (a.only or "").split(",")]
    only = [MEASURE_ALIASES.get(m, m) for m in names if m]
    bad = [m for m in only if m not in MEASURES]
    if bad:
        ap.error(f"--only: unknown measure(s) {', '.join(bad)}; choose from {', '.join(MEASURES)}")
    a.only = only or MEASURES
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    overrides = {"rounds": args.rounds, "idle_conns": args.idle_conns, "max_cap": args.max_cap}
    settings = Settings(**{**settings.__dict__,
                           **{k: v for k, v in overrides.items() if v is not None}})
    keys = ["ec", "rsa"] if (args.key or ("ec" if args.quick else "both")) == "both" \
        else [args.key or "ec"]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    nofile = raise_nofile()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(143))
    client, backend_cmd, client_kind = build_tools(log)
    all_cands = find_candidates(args)
    by_name = {c.name: c for c in all_cands}
    if args.no_hitch:
        by_name["hitch"].available, by_name["hitch"].reason = False, "left out (--no-hitch)"
    for c in all_cands:
        log(f"{c.name:10s} {c.version or ''} {'' if c.available else '-- ' + c.reason}")
    if not by_name["stunnel"].available:
        log("stunnel is required: it is the yardstick (bash bench/setup.sh installs it)")
        return 2
    results = Results()
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="tlswrap-bench-"))
    try:
        backend = PROCS.start([*backend_cmd, "0"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        backend_port = int(read_line(backend, 20).split()[1])
        envs = {k: Env(settings, client, backend_cmd, backend_port, workdir,
                       make_certs(workdir, k), log) for k in keys}
        _probe_tlswrap(envs[keys[0]], by_name, log)
        main_cands = [c for c in all_cands if c.available
                      and c.name not in ("tlswrap-w2", "tlswrap-metrics")]
        # variants of tlswrap measured beside the plain one: workers = 2, metrics on
        variants = [c for name, measure in (("tlswrap-w2", "workers"),
                                            ("tlswrap-metrics", "metrics"))
                    if (c := by_name.get(name)) and c.available and measure in args.only]
        plans = []
        if "hs" in args.only or variants:
            hs_cands = (main_cands if "hs" in args.only else [by_name["tlswrap"]]) + variants
            plans.append(Plan("hs_full", hs_cands, settings.rounds, keys,
                              lambda e, r: m_hs(e, r, resume=False)))
            # resumed too, and across workers = 2: a session from one worker offered to
            # whichever worker the kernel picks next (shared ticket keys)
            plans.append(Plan("hs_resumed", hs_cands, settings.rounds, keys,
                              lambda e, r: m_hs(e, r, resume=True)))
        if "rr" in args.only or variants:
            rr_cands = (main_cands if "rr" in args.only else [by_name["tlswrap"]]) + variants
            plans.append(Plan("rr", rr_cands, settings.rounds, keys, m_rr))
        if "bulk" in args.only:
            plans.append(Plan("bulk", main_cands, settings.rounds, keys, m_bulk))
        if "idle" in args.only:
            plans.append(Plan("idle", main_cands, settings.idle_rounds, keys, m_idle))
        no_hitch = [c for c in main_cands if c.kind != "hitch"]
        if "max" in args.only:
            plans.append(Plan("max", no_hitch, settings.max_rounds, keys[:1], m_max))
        if "inetd" in args.only:
            inetd = [c for c in no_hitch if c.inetd]
            plans.append(Plan("inetd", inetd, settings.inetd_rounds, keys, m_inetd,
                              needs_proxy=False))
            if settings.inetd_rules:
                plans.append(Plan("inetd_rules", inetd, settings.inetd_rounds, keys,
                                  m_inetd_rules, needs_proxy=False))
        for plan in plans:
            if plan.cands:
                log(f"{plan.measure}: {', '.join(c.name for c in plan.cands)}, "
                    f"{plan.rounds} round(s), keys {', '.join(plan.keys)}")
                run_plan(envs, plan, results, log)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    finally:
        PROCS.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(results, keys, by_name, settings)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1), "quick": args.quick, "keys": keys,
        "settings": settings.__dict__, "cpus": os.cpu_count(), "nofile": nofile,
        "platform": platform.platform(), "python": platform.python_version(),
        "client": client_kind, "loadavg_end": os.getloadavg(),
        "openssl_client": subprocess.run(["openssl", "version"], capture_output=True,
                                         text=True, timeout=30).stdout.strip(),
        "tlswrap_commit": _git_commit(),
    }
    doc = {"meta": meta,
           "candidates": {c.name: {"available": c.available, "reason": c.reason,
                                   "version": c.version, "workers": c.workers,
                                   "inetd": c.inetd, "inetd_reason": c.inetd_reason}
                          for c in all_cands},
           "summary": summary, "trials": results.trials}
    RESULTS.mkdir(exist_ok=True)
    paths = [RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"]
    if args.json:
        paths.append(args.json)
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(doc, indent=1) + "\n")

    print(f"\ntlswrap benchmark, {meta['started']}, {meta['cpus']} CPUs, client: {client_kind}, "
          f"medians of {settings.rounds} round(s) (idle {settings.idle_rounds}, "
          f"inetd {settings.inetd_rounds}, max {settings.max_rounds})")
    for c in all_cands:
        state = c.version if c.available else c.reason
        if c.kind == "tlswrap" and c.available:
            state += f", workers = {c.workers}"
            if c.name == "tlswrap" and not c.inetd:
                state += f"; {c.inetd_reason}"
        print(f"  {c.name}: {state}" + (f" (workers {c.workers})" if c.kind == "hitch" else ""))
    print_table(summary, print)
    failed = [t for t in results.trials if not t.get("ok")]
    for t in failed:
        print(f"  failed: {t['key']} {t['measure']} r{t['round']} {t['cand']}: {t['error']}")
    print(f"ratio = tlswrap/stunnel of the medians; hitch is the far reference. JSON: {paths[0]}")
    return 0


def _probe_tlswrap(env: Env, by_name: dict[str, Candidate], log: Callable[[str], None]) -> None:
    """tlswrap counts as available only if it really serves one connection, daemon and inetd."""
    tw = by_name["tlswrap"]
    if not tw.available:
        return
    try:
        run = Running(tw, env.certs, env.backend_port, env.workdir)
        try:
            r = client_json(env, hs_args(run.port, 1, 0.3), timeout=60)
            if r["count"] < 1:
                raise RuntimeError(f"no greeting through tlswrap; log: {tail(run.log)}")
        finally:
            run.stop()
    except Exception as exc:
        for c in (tw, by_name.get("tlswrap-w2")):
            if c:
                c.available, c.inetd, c.reason = False, False, f"not available: {exc}"
        log(f"tlswrap {tw.reason}")
        return
    w2 = by_name.get("tlswrap-w2")
    if w2:
        try:
            run = Running(w2, env.certs, env.backend_port, env.workdir)
            try:
                time.sleep(0.5)
                if run.nprocs() < 2:
                    w2.version += " (workers = 2 accepted, but one process runs)"
            finally:
                run.stop()
        except Exception as exc:
            w2.available, w2.reason = False, f"workers = 2 not available: {exc}"
            log(f"tlswrap-w2 {w2.reason}")
    try:
        m_inetd(Env(Settings.quick(), env.client, env.backend, env.backend_port, env.workdir,
                    env.certs, log), tw)
    except Exception as exc:
        tw.inetd, tw.inetd_reason = False, f"inetd mode not available: {exc}"
        log(f"tlswrap {tw.inetd_reason}")


def _git_commit() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
