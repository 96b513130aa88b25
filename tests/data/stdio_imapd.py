#!/usr/bin/env python3
"""A little IMAP on stdin/stdout, for exec tests: it reports the environment it was given.

Commands: ENV (one untagged line per variable), FDS (open descriptors), SLEEP (never reads
again), EXIT (exits at once without answering), BIG n (writes n bytes), STDERR (a line on
stderr), NOISE (control characters on stderr: a line, then one without a newline), LOGOUT.
"""
import os
import sys
import time

VARS = ("PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT", "TCPREMOTEHOST",
        "REMOTE_HOST", "REMOTE_PORT", "SSL_CLIENT_DN", "SSL_CLIENT_I_DN", "LISTEN_FDS",
        "GREETING_VAR", "SETENV_VAR")
out = sys.stdout.buffer
out.write(b"* OK stdio imapd ready pid=%d\r\n" % os.getpid())
out.flush()
for line in sys.stdin.buffer:
    tag, _, cmd = line.strip().partition(b" ")
    word, _, arg = cmd.upper().partition(b" ")
    if word == b"CAPABILITY":
        out.write(b"* CAPABILITY IMAP4rev1\r\n")
    elif word == b"ENV":
        for k in VARS:
            if k in os.environ:
                out.write(f"* ENV {k}={os.environ[k]}\r\n".encode())
    elif word == b"FDS":  # the descriptors this program inherited
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        fds = [fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")]  # not listdir's own
        out.write(b"* FDS " + " ".join(map(str, fds)).encode() + b"\r\n")
    elif word == b"SLEEP":
        out.write(tag + b" OK sleeping\r\n")
        out.flush()
        time.sleep(3600)
    elif word == b"EXIT":
        sys.exit(3)
    elif word == b"BIG":
        out.write(b"x" * int(arg))
    elif word == b"NOISE":  # what a terminal or log viewer would act on, were it shown raw
        sys.stderr.buffer.write(b"cr\rmid esc\x1b[2Jx bel\x07 nul\x00 bs\x08 del\x7f "
                                b"c1\xc2\x9b ls\xe2\x80\xa8 rlo\xe2\x80\xae tab\tx bad\xff end\n"
                                b"tail\x1b]0;title\x07")
        sys.stderr.flush()
    elif word == b"STDERR":
        sys.stderr.write("a line on stderr\n")
        sys.stderr.flush()
    out.write(tag + b" OK done\r\n")
    out.flush()
    if word == b"LOGOUT":
        break
