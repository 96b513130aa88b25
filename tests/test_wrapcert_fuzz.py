"""wrapcert's parsers under hypothesis: any input gives a result or a TlswrapError, never another
exception. Each parser goes as far as a certificate (names, extensions, dates are built and
signed), since that is where a value the parser let through would fail.

Derandomized and bounded (a few seconds each), so a run in CI is repeatable and quick.
"""

from __future__ import annotations

import argparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert import build
from tlswrap.wrapcert.cli import ascii_number
from tlswrap.wrapcert.dn import parse_subj
from tlswrap.wrapcert.extconf import ExtSpec, parse_san
from tlswrap.wrapcert.opensslconf import parse_conf
from tlswrap.wrapcert.reqconf import KeySpec, parse_key_type, read_req

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
KEY = build.generate_key(KeySpec("ec", curve="P-256"))

# Characters the syntaxes give a meaning to, mixed with digits, letters and any Unicode text.
_SPECIAL = "[]=#\"'\\$:{}().,+/@* \t\n-_"
_WORDS = [
    "req", "dn", "ext", "ENV", "CN", "C", "O", "emailAddress", "DNS", "IP", "email", "URI", "RID",
    "default_bits", "distinguished_name", "x509_extensions", "req_extensions", "prompt", "no",
    "subjectAltName", "basicConstraints", "keyUsage", "extendedKeyUsage", "critical", "CA:TRUE",
    "pathlen", "1.2.3", "2.5.4.3", "340282366920938463463374607431768211456", "_min", "_max",
    "_default", "bücher", "xn--", "é", "²", "٣", "①", "\u200d", "\x00",
]  # fmt: skip
pieces = st.one_of(
    st.sampled_from(_WORDS),
    st.text(alphabet=_SPECIAL, max_size=4),
    st.text(alphabet="0123456789.", max_size=45),
    st.text(max_size=6),
)
syntax = st.lists(pieces, max_size=24).map("".join)
value = st.lists(pieces, max_size=6).map("".join)
oid = st.lists(st.integers(0, 2**130).map(str), min_size=1, max_size=8).map(".".join)


def joined(item, sep):
    return st.lists(item, min_size=1, max_size=5).map(sep.join)


san_item = st.tuples(
    st.sampled_from(["DNS", "IP", "email", "URI", "RID", "dirName", "dns", "x"]),
    st.one_of(value, oid, st.tuples(value, value).map("@".join)),
).map(":".join)
# whole SAN values: structured items, or free text
san_text = st.one_of(joined(san_item, ","), syntax)
subj_item = st.tuples(
    st.sampled_from(["CN", "C", "O", "emailAddress", "DC", "serialNumber"]) | oid, value
).map("=".join)
subj_text = st.one_of(joined(joined(subj_item, "+"), "/").map(lambda s: "/" + s), syntax)
conf_line = st.one_of(
    st.tuples(st.sampled_from(_WORDS) | value, st.sampled_from(["", "_min", "_max", "_default"]),
              value).map(lambda t: f"{t[0]}{t[1]} = {t[2]}"),
    st.tuples(st.sampled_from(["subjectAltName", "extendedKeyUsage", "basicConstraints",
                               "keyUsage", "nsComment", "authorityKeyIdentifier"]),
              st.one_of(san_text, joined(oid, ","), value)).map(" = ".join),
    value.map(lambda s: f"[{s}]"),
    syntax,
)  # fmt: skip
conf_text = st.lists(conf_line, max_size=8).map("\n".join)


def _certificate(rdns=None, specs=(), days=1):
    name = build.make_name(rdns or [[("2.5.4.3", "fuzz.example")]])
    return build.issue(KEY.public_key(), name, KEY, name, list(specs), days)


@FUZZ
@given(st.one_of(conf_text, syntax))
def test_openssl_config_reader(text):
    try:
        conf = parse_conf(text, "f.cnf", {"HOME": "/root"})
    except TlswrapError:
        return
    try:
        read_req(conf)
    except TlswrapError:
        pass


_REQ = (
    "[req]\ndistinguished_name = dn\nprompt = {prompt}\nx509_extensions = ext\n{req}\n"
    "[dn]\n{dn}\n[ext]\n{ext}\n"
)


@FUZZ
@given(st.sampled_from(["yes", "no"]), conf_text, conf_text, conf_text)
def test_req_config_to_certificate(prompt, req, dn, ext):
    """A [req] config whose sections hold anything: read, then its extensions built."""
    text = _REQ.format(prompt=prompt, req=req, dn=dn, ext=ext)
    try:
        settings_ = read_req(parse_conf(text, "f.cnf"))
        _certificate(specs=settings_.x509_extensions or ())
    except TlswrapError:
        pass


@FUZZ
@given(subj_text)
def test_subject_syntax(text):
    try:
        _certificate(rdns=parse_subj(text))
    except TlswrapError:
        pass


@FUZZ
@given(san_text)
def test_san_syntax(text):
    try:
        names = parse_san(text, "--san", None)
        _certificate(specs=[ExtSpec("subjectAltName", False, names, "--san", None)])
    except TlswrapError:
        pass


numeric = st.one_of(
    syntax,
    st.integers().map(str),
    st.text(alphabet="0123456789+- _²٣①", max_size=30),
    st.integers(min_value=10**18, max_value=10**40).map(str),
)


@FUZZ
@given(numeric)
def test_numeric_options(text):
    """-days and the other numbers of the command line, rsa:BITS, and [req] numbers."""
    try:
        days = ascii_number(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        try:
            _certificate(days=days)
        except TlswrapError:
            pass
    try:
        parse_key_type("rsa:" + text)
    except TlswrapError:
        pass
    conf = f"[req]\ndefault_bits = {text}\ndistinguished_name = dn\n[dn]\nCN = x\nCN_max = {text}\n"
    try:
        read_req(parse_conf(conf, "f.cnf"))
    except TlswrapError:
        pass


@pytest.mark.parametrize("days", [-(10**30), -1, 0, 1, 10**6, 2_912_108, 3 * 10**6, 10**30])
def test_days_edges(days):
    try:
        cert = _certificate(days=days)
    except TlswrapError as exc:
        assert str(exc).startswith(f"-days {days}: ")
    else:
        assert cert.not_valid_after_utc.year <= 9999
