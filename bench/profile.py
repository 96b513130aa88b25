#!/usr/bin/env python3
"""Profile tlswrap under one benchmark load with py-spy, and summarize where the time goes.

    python bench/profile.py hs|hs-resumed|rr|bulk-up|bulk-down [--seconds 8] [--key ec|rsa]
                            [--native] [--out DIR]

Starts the benchmark backend and one tlswrap (the same config bench/run.py writes), attaches
`py-spy record` (pip install py-spy into the venv; needs root or ptrace rights) to the tlswrap
process while the load client runs, and prints the hottest functions by own time and by
inclusive time, plus the share of samples in the OpenSSL library and in the event loop wait.
The raw collapsed stacks are kept in --out for flame graphs (e.g. speedscope, inferno).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # the harness: processes, certificates, configs, client

LOADS = {
    "hs": lambda port, s: bench.hs_args(port, 32, s),
    "hs-resumed": lambda port, s: bench.hs_args(port, 32, s, resume=True),
    "rr": lambda port, s: ["rr", "--port", str(port), "--conc", "32", "--size", "120",
                           "--duration", str(s), "--warmup", "0"],
    "bulk-up": lambda port, s: ["bulk", "--port", str(port), "--dir", "up",
                                "--bytes", str(int(s * 400e6)), "--timeout", "300"],
    "bulk-down": lambda port, s: ["bulk", "--port", str(port), "--dir", "down",
                                  "--bytes", str(int(s * 400e6)), "--timeout", "300"],
}


def summarize(collapsed: Path, top: int = 25) -> str:
    """Own-time and inclusive-time tables from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    idle = ssl = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
        if any("epoll_wait" in f or "get_events" in f for f in frames[-3:]):
            idle += count
        if any("libssl" in f or "libcrypto" in f or "ossl_" in f or "SSL_" in f
               for f in frames[-6:]):
            ssl += count
    if not total:
        return "no samples"
    out = [f"{total} samples; waiting in epoll {100 * idle / total:.0f}%; "
           f"inside OpenSSL (native frames, --native only) {100 * ssl / total:.0f}%",
           "", "own time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    # py-spy frames look like "receive_some (tlswrap/tlsstream.py:71)"
    frame = frame.replace(str(bench.REPO) + "/", "")
    for marker in ("site-packages/", "lib/python3"):
        i = frame.find(marker)
        if i >= 0:
            j = frame.rfind("(", 0, i)
            frame = frame[: j + 1] + frame[i + len(marker):] if j >= 0 else frame
    return frame


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("load", choices=sorted(LOADS))
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--key", choices=["ec", "rsa"], default="ec")
    ap.add_argument("--native", action="store_true", help="sample C frames too (OpenSSL)")
    ap.add_argument("--rate", type=int, default=250, help="samples per second")
    ap.add_argument("--out", type=Path, default=bench.RESULTS)
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(bench.REPO / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    bench.raise_nofile()
    client, backend_cmd, _ = bench.build_tools(lambda m: print(m, file=sys.stderr))
    cands = {c.name: c for c in bench.find_candidates(argparse.Namespace())}
    tw = cands["tlswrap"]
    if not tw.available:
        print(f"tlswrap {tw.reason}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tlswrap-profile-"))
    a.out.mkdir(parents=True, exist_ok=True)
    raw = a.out / f"profile-{a.load}-{a.key}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    try:
        backend = bench.PROCS.start([*backend_cmd, "0"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        backend_port = int(bench.read_line(backend, 20).split()[1])
        certs = bench.make_certs(workdir, a.key)
        env = bench.Env(bench.Settings(), client, backend_cmd, backend_port, workdir, certs,
                        lambda m: None)
        proc = bench.Running(tw, certs, backend_port, workdir)
        try:
            bench.warm(env, proc.port)
            spy_cmd = [spy, "record", "--pid", str(proc.proc.pid), "--rate", str(a.rate),
                       "--format", "raw", "--output", str(raw), "--nonblocking",
                       "--duration", str(int(a.seconds + 1))]
            if a.native:
                spy_cmd.append("--native")
            recorder = bench.PROCS.start(spy_cmd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            time.sleep(0.5)
            t0 = time.monotonic()
            r = bench.client_json(env, LOADS[a.load](proc.port, a.seconds),
                                  timeout=a.seconds + 120)
            spent = time.monotonic() - t0
            try:
                recorder.wait(timeout=a.seconds + 30)
            except subprocess.TimeoutExpired:
                bench.PROCS.stop(recorder)
        finally:
            proc.stop()
    finally:
        bench.PROCS.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load {a.load} ({a.key}) for {spent:.1f} s under py-spy: "
          + " ".join(f"{k}={v}" for k, v in r.items() if k in ("rate", "mb_s", "p50_ms", "p99_ms")))
    if raw.exists():
        print(summarize(raw))
        print(f"collapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
