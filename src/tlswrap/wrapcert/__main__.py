"""``python -m tlswrap.wrapcert``: the same as the ``wrapcert`` command."""

import sys

from tlswrap.wrapcert.cli import main

sys.exit(main())
