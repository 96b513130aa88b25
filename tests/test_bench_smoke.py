"""The benchmark harness runs and produces numbers (bench/run.py --quick).

Not a performance test: nothing here is timed or compared, the figures only have to exist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"

pytestmark = pytest.mark.skipif(
    not (shutil.which("stunnel4") or shutil.which("stunnel")),
    reason="stunnel4 is not installed: it is the benchmark's yardstick (bash bench/setup.sh)",
)


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: the harness makes its certificates with it")
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    doc = json.loads(out.read_text()) if out.exists() else {}
    return proc, doc


def test_exits_zero_and_prints_the_table(quick_run) -> None:
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio" in proc.stdout
    assert "1 new TLS conns/s, full handshakes" in proc.stdout


def test_stunnel_figures_are_numbers(quick_run) -> None:
    _, doc = quick_run
    rows = {(e["measure"], e["metric"]): e for e in doc["summary"] if e["key"] == "ec"}
    for measure, metric in [("hs_full", "rate"), ("hs_resumed", "rate"), ("rr", "rate"),
                            ("rr", "p99_ms"), ("bulk", "down_mb_s"), ("bulk", "up_mb_s"),
                            ("idle", "kb_per_conn"), ("max", "held"), ("inetd", "p50_ms")]:
        value = rows[(measure, metric)]["stunnel"]
        assert isinstance(value, (int, float)) and value > 0, (measure, metric, value)


def test_every_trial_of_an_available_candidate_succeeded(quick_run) -> None:
    _, doc = quick_run
    available = {name for name, c in doc["candidates"].items() if c["available"]}
    assert "stunnel" in available
    failed = [t for t in doc["trials"] if t["cand"] in available and not t["ok"]]
    assert not failed, failed


def test_tlswrap_is_measured_or_said_to_be_missing(quick_run) -> None:
    _, doc = quick_run
    tw = doc["candidates"]["tlswrap"]
    rate = next(e for e in doc["summary"]
                if e["key"] == "ec" and e["measure"] == "hs_full" and e["metric"] == "rate")
    if tw["available"]:
        assert isinstance(rate["tlswrap"], (int, float)) and rate["tlswrap"] > 0
        assert isinstance(rate["ratio"], float)
    else:
        assert rate["tlswrap"] == "n/a" and tw["reason"]
