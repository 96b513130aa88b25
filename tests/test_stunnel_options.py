"""Every option of stunnel 5.75's manual is known to tlswrap or listed as not yet done, and the
README's table says which: the table cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tlswrap.config import OPTIONS, parse_config
from tlswrap.config.options import NOT_YET
from tlswrap.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
STUNNEL_OPTIONS = [word for line in
                   (REPO / "tests" / "data" / "stunnel" / "options-5.75.txt").read_text()
                   .splitlines() if not line.startswith("#") for word in line.split()]


def _readme_rows() -> dict[str, set[str]]:
    text = (REPO / "README.md").read_text()
    table = text[text.index("### stunnel's options, one by one"):]
    rows: dict[str, set[str]] = {}
    started = False
    for line in table.splitlines():
        if not line.startswith("|"):
            if started:
                break
            continue
        started = True
        status, names = line.strip("|").split("|", 1)
        if status.strip() in ("status", "---", ""):
            continue
        # option names are backticked; values in parentheses after them are not
        rows[status.strip()] = set(re.findall(r"`([A-Za-z]+)`", re.sub(r"\([^)]*\)", "", names)))
    return rows


def test_the_list_holds_each_option_once():
    assert len(STUNNEL_OPTIONS) == len(set(STUNNEL_OPTIONS)) == 98


def test_every_stunnel_option_is_in_the_readme_table_once():
    rows = _readme_rows()
    listed = [name for names in rows.values() for name in names]
    assert sorted(listed) == sorted(STUNNEL_OPTIONS)


def test_the_table_matches_the_code():
    rows = _readme_rows()
    pending = rows["not yet"]
    known = {name.lower() for name in OPTIONS} | {"include"}  # include: the parser's own
    assert not {n for n in pending if n.lower() in known}, "done: move it out of 'not yet'"
    assert {n.lower() for n in pending} == set(NOT_YET), "each 'not yet' has its reason"
    missing = {n for n in STUNNEL_OPTIONS if n not in pending and n.lower() not in known}
    assert not missing, "in the table as done, unknown to the parser"


@pytest.mark.parametrize("name", ["ticketKeySecret", "ticketMacSecret"])
def test_an_option_not_done_yet_says_why_at_its_line(name):
    text = f"[imaps]\naccept = 993\nconnect = 143\ncert = c.pem\n{name} = 6c:61:73\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.conf")
    message = str(info.value)
    assert message.startswith(f"s.conf:5: [imaps] {name}: not supported yet: ")
    assert "unknown option" not in message and "6c:61:73" not in message
