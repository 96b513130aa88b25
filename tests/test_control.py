"""``tlswrap reload CONFIG``: SIGHUP to the daemon of the pid file, and only to a tlswrap."""

from __future__ import annotations

import signal
import subprocess
import sys

from conftest import free_port, greet_echo, service_config, wait_for
from tlswrap.cli import main


def test_reload_signals_the_daemon_of_the_pid_file(certs, thread_server, tlswrap, tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    pid = tmp_path / "tlswrap.pid"
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  global_extra=f"pid = {pid}"), [port])
    done = subprocess.run([sys.executable, "-m", "tlswrap", "reload", str(proc.config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done
    assert done.stdout == f"tlswrap: sent SIGHUP to pid {proc.proc.pid}\n"
    wait_for(lambda: "configuration reloaded" in proc.log(), 10, "the reload")


def test_reload_refuses_what_it_cannot_trust(certs, tmp_path, capsys):
    cfg = tmp_path / "t.conf"
    cfg.write_text(service_config(certs, 993, "143"))
    assert main(["reload", str(cfg)]) == 1
    assert "no 'pid' option, so there is no pid file" in capsys.readouterr().err

    pid = tmp_path / "t.pid"
    cfg.write_text(service_config(certs, 993, "143", global_extra=f"pid = {pid}"))
    assert main(["reload", str(cfg)]) == 1
    assert f"{cfg}:3: pid = {pid}: cannot read the pid file: No such file or directory" \
        in capsys.readouterr().err
    pid.write_text("not a pid\n")
    assert main(["reload", str(cfg)]) == 1
    assert "cannot read the pid file: it does not hold a process id" in capsys.readouterr().err

    other = subprocess.Popen(["sleep", "60"])  # a live process that is not tlswrap
    try:
        pid.write_text(f"{other.pid}\n")
        assert main(["reload", str(cfg)]) == 1
        assert f"process {other.pid} is not tlswrap" in capsys.readouterr().err
        assert other.poll() is None  # not signalled
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(5)
    pid.write_text(f"{other.pid}\n")  # reaped: gone
    assert main(["reload", str(cfg)]) == 1
    assert f"process {other.pid} is not running" in capsys.readouterr().err
    assert main(["reload"]) == 2
