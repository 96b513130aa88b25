"""Generated configs through the whole start-up compile, ``snapshot.prepare``, with real files.

Each example is a config of one or two services whose values mix the valid with the hostile
(huge numbers, NUL, long or non-ASCII host names, FIFOs, devices, keys OpenSSL cannot use).
Whatever the text, the result is a Snapshot or a ConfigError: any other exception would be a
traceback at start or a reload that says nothing of FILE:LINE. Bounded for CI: 200 examples,
derandomized when ``CI`` is set so a failure there can be replayed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlswrap.config import parse_config
from tlswrap.errors import ConfigError
from tlswrap.snapshot import Snapshot, prepare

FUZZ = settings(max_examples=200, deadline=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files(certs, tmp_path_factory) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519

    d = tmp_path_factory.mktemp("fuzzfiles")
    combined = d / "combined.pem"
    combined.write_bytes(certs.key_file.read_bytes() + certs.cert_file.read_bytes())
    x_key = d / "x25519.key"
    x_key.write_bytes(x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    weak = d / "weak.key"
    weak.write_bytes(rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    junk = d / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                     b"-----END CERTIFICATE-----\n")
    fifo = d / "fifo.pem"
    os.mkfifo(fifo)
    return {"cert": str(certs.cert_file), "key": str(certs.key_file), "ca": str(certs.ca_file),
            "combined": str(combined), "x25519": str(x_key), "weak": str(weak),
            "junk": str(junk), "fifo": str(fifo), "dir": str(d), "missing": str(d / "none"),
            "null": "/dev/null", "zero": "/dev/zero"}


_NUMBERS = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats().map(str),
                     st.sampled_from(["1e19", "0", "-0", "nan", "inf", "²", "٣", "0x10", "1_0"]))
_HOSTS = st.one_of(
    st.sampled_from(["127.0.0.1", "::1", "[::1]", "localhost", "a" * 64, "a" * 63,
                     ("a" * 63 + ".") * 4, "bücher.example", "bücher☠.example", "x..y", ".",
                     "mail.example.org.", "é" * 60, "a b", "[::1", "*"]),
    st.text(max_size=20))
_PORTS = st.one_of(st.integers(-1, 70000).map(str), st.sampled_from(["imaps", "x-y", "²", ""]))


def _address(host: str, port: str) -> str:
    return f"{host}:{port}" if host else port


_PATH_KEYS = ["cert", "key", "ca", "combined", "x25519", "weak", "junk", "fifo", "dir",
              "missing", "null", "zero"]


def _options(paths: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One ``option = value`` line, valid or not."""
    return st.one_of(
        st.builds(lambda p: f"cert = {p}", paths),
        st.builds(lambda p: f"key = {p}", paths),
        st.builds(lambda p: f"CAfile = {p}", paths),
        # the TLS features (issue 12): files, levels, names and their combinations
        st.builds(lambda k, p: f"{k} = {p}", st.sampled_from(
            ["CApath", "CRLfile", "CRLpath", "OCSPstaple"]), paths),
        st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
            ["alpn", "verify", "verifyChain", "verifyPeer", "requireCert", "checkHost",
             "checkEmail", "checkIP", "sni", "sniStrict", "client", "OCSPaia", "OCSP",
             "securityLevel", "redirect"]),
            st.one_of(st.sampled_from(["imap", "0", "2", "4", "yes", "no", "svc0:*.example.org",
                                       "a@example.org", "192.0.2.1", "http://127.0.0.1:9/",
                                       "127.0.0.1:1143", "5"]), st.text(max_size=12))),
        st.builds(lambda n: f"sessionCacheTimeout = {n}", _NUMBERS),
        st.builds(lambda n: f"TIMEOUTidle = {n}", _NUMBERS),
        st.builds(lambda w, o, n: f"socket = {w}:{o}={n}", st.sampled_from("alrx"),
                  st.sampled_from(["SO_SNDBUF", "SO_RCVBUF", "TCP_NODELAY", "TCP_KEEPIDLE",
                                   "TCP_KEEPCNT", "SO_KEEPALIVE", "BOGUS"]), _NUMBERS),
        st.builds(lambda v: f"ciphers = {v}", st.one_of(
            st.sampled_from(["HIGH", "NOPE", "ECDHE+AESGCM", "", "aNULL"]), st.text(max_size=15))),
        st.builds(lambda v: f"ciphersuites = {v}", st.one_of(
            st.sampled_from(["TLS_AES_128_GCM_SHA256", "NOPE"]), st.text(max_size=15))),
        st.builds(lambda v: f"curves = {v}", st.one_of(
            st.sampled_from(["X25519", "P-256:X25519MLKEM768", "nope", ":"]),
            st.text(max_size=15))),
        st.builds(lambda v: f"sslVersion{v}", st.sampled_from(
            [" = TLSv1.2", " = TLSv1.3", " = SSLv3", "Min = TLSv1", "Max = TLSv1.1",
             "Max = all", "Min = TLSv1.3"])),
        st.builds(lambda v: f"options = {v}", st.sampled_from(
            ["NO_TLSv1_2", "NO_TLSv1_3", "NO_TICKET", "ALL", "-NO_SSLv3", "BOGUS"])),
        st.builds(lambda h, p: f"accept = {_address(h, p)}", _HOSTS, _PORTS),
        st.builds(lambda h, p: f"connect = {_address(h, p)}", _HOSTS, _PORTS),
        st.sampled_from(["accept = /run/tlswrap/t.sock", "connect = /run/dovecot/imap.sock",
                         "accept = /" + "d" * 120, "exec = /bin/cat", "execArgs = cat -u",
                         "libwrap = yes", "verify = 0", "client = no"]),
        st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
            ["cert", "key", "accept", "connect", "ciphers", "curves", "sessionCacheTimeout"]),
            st.text(max_size=20)),
    )


_GLOBALS = st.one_of(
    st.builds(lambda n: f"setuid = {n}", st.one_of(_NUMBERS, st.text(max_size=10))),
    st.builds(lambda n: f"setgid = {n}", st.one_of(_NUMBERS, st.text(max_size=10))),
    st.builds(lambda n: f"workers = {n}", _NUMBERS),
    st.builds(lambda n: f"debug = {n}", st.one_of(_NUMBERS, st.sampled_from(
        ["mail.info", "daemon.7", "bogus.3", "local7.err"]))),
)


@st.composite
def _configs(draw, files: dict[str, str]) -> str:
    paths = st.one_of(st.sampled_from(_PATH_KEYS).map(files.__getitem__),
                      st.sampled_from(_PATH_KEYS).map(lambda k: files[k] + "\0"),
                      st.text(max_size=10))
    lines = draw(st.lists(_GLOBALS, max_size=2))
    for i in range(draw(st.integers(1, 2))):
        lines.append(draw(st.sampled_from([f"[svc{i}]", f"[my service {i}]"])))
        lines += [f"accept = 127.0.0.1:{993 + i}", "connect = 127.0.0.1:143",
                  f"cert = {files['cert']}", f"key = {files['key']}", "libwrap = no"]
        lines += draw(st.lists(_options(paths), max_size=3))
    return "\n".join(lines) + "\n"


@FUZZ
@given(data=st.data())
def test_prepare_gives_a_snapshot_or_a_config_error(files, data):
    text = data.draw(_configs(files))
    try:
        snapshot = prepare(parse_config(text, "fuzz.conf"), "fuzz.conf")
    except ConfigError as exc:
        for each in exc.all():
            assert each.filename == "fuzz.conf"
            assert each.lineno is None or 1 <= each.lineno <= len(text.splitlines())
    else:
        assert isinstance(snapshot, Snapshot)
