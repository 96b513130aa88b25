"""tlswrap inetd-script: the entry script for inetd lines runs python -IS."""

from __future__ import annotations

import subprocess
import sys

from tlswrap import __version__
from tlswrap.cli import main


def test_the_script_runs_isolated_without_site(tmp_path, capsys):
    script = tmp_path / "tlswrap-inetd"
    assert main(["inetd-script", str(script)]) == 0
    text = script.read_text()
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert script.stat().st_mode & 0o777 == 0o755
    # -I: a PYTHONPATH that would shadow tlswrap, and a sitecustomize that fails, are ignored
    hostile = tmp_path / "hostile"
    (hostile / "tlswrap").mkdir(parents=True)
    (hostile / "tlswrap" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    (hostile / "sitecustomize.py").write_text("raise SystemExit('site ran')\n")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(hostile), "PATH": "/usr/bin:/bin"})
    assert (r.returncode, r.stdout, r.stderr) == (0, f"tlswrap {__version__}\n", "")


def test_to_stdout_and_usage(capsys):
    assert main(["inetd-script"]) == 0
    assert capsys.readouterr().out.startswith("#!")
    assert main(["inetd-script", "a", "b"]) == 2
    assert "usage: tlswrap inetd-script" in capsys.readouterr().err
    assert main(["inetd-script", "/nonexistent/dir/x"]) == 1
    assert "tlswrap: /nonexistent/dir/x: No such file or directory" in capsys.readouterr().err
