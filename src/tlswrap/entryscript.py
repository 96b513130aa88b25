"""``tlswrap inetd-script [FILE]``: an entry script for inetd lines that starts Python fast.

The console script pip writes runs a full interpreter start: ``site`` reads every .pth file
(an editable install's path, setuptools' ``_distutils_hack``), about 3 ms per connection;
``-I`` also keeps PYTHON* variables and the user's site-packages out. The script written
here runs the same interpreter with ``-IS`` and lists, itself, the directories tlswrap and
its libraries are imported from (as this interpreter found them now: write it again after
moving or rebuilding the environment). Everything else is ``tlswrap``'s own command line.
"""

from __future__ import annotations

import os
import sys

USAGE = """\
usage: tlswrap inetd-script [FILE]
  Write an entry script (to FILE, mode 0755, or to stdout) that runs tlswrap with
  'python -IS': no site, no .pth files, no PYTHON* variables. Use it in inetd lines:
    imaps stream tcp nowait root FILE tlswrap -p /etc/ssl/mail.pem -r 127.0.0.1:143
"""


def library_paths() -> list[str]:
    """The directories of ``sys.path`` this start needs beyond the standard library: where
    tlswrap is, and the site-packages directories (trio, pyOpenSSL, cryptography, ...)."""
    import site

    import tlswrap

    own = os.path.dirname(os.path.dirname(os.path.abspath(tlswrap.__file__)))
    sites = [os.path.abspath(p) for p in site.getsitepackages() if os.path.isdir(p)]
    wanted = [own, *sites]
    found = []
    for entry in sys.path:  # in the order this interpreter looks
        path = os.path.abspath(entry) if entry else ""
        if path in wanted and path not in found:
            found.append(path)
    return found + [p for p in wanted if p not in found]


def script_text(python: str, paths: list[str]) -> str:
    """The entry script for ``python`` with ``paths`` appended to its standard ones."""
    return (f"#!{python} -IS\n"
            "# tlswrap's entry for inetd, xinetd and systemd Accept=yes: written by\n"
            "# 'tlswrap inetd-script'. -I: no PYTHON* variables, no user site-packages;\n"
            "# -S: no site module and no .pth files (these directories instead).\n"
            "import sys\n\n"
            f"sys.path.extend({paths!r})\n"
            "from tlswrap.cli import main\n\n"
            "sys.exit(main())\n")


def main(args: list[str]) -> int:
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(USAGE, end="", file=sys.stderr if args and args[0] not in ("-h", "--help")
              else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    text = script_text(sys.executable, library_paths())
    if not args:
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o755)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(args[0], 0o755)
    except OSError as exc:
        print(f"tlswrap: {args[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
