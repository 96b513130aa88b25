"""wrapcert commands end to end: files written, what openssl says about them, exit codes."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import select
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlswrap.wrapcert import build
from tlswrap.wrapcert.cli import main
from tlswrap.wrapcert.commands import check_certificate
from tlswrap.wrapcert.dn import parse_subj
from tlswrap.wrapcert.reqconf import KeySpec

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stunnel.cnf"
SUBJ = "/C=CA/O=Example/CN=mail.example.org"


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE, tmp_path / "stunnel.cnf")
    return tmp_path


def text_of(path) -> str:
    return openssl("x509", "-noout", "-text", "-in", str(path)).stdout


def pubkey_matches(cert_path, key_path) -> bool:
    a = openssl("x509", "-pubkey", "-noout", "-in", str(cert_path)).stdout
    b = openssl("pkey", "-pubout", "-in", str(key_path)).stdout
    return a == b


# --- acceptance 1 and 2: the stunnel recipe ---------------------------------------------------


@needs_openssl
def test_stunnel_recipe(workdir, capsys):
    argv = ["new", "-config", "stunnel.cnf", "-days", "365", "-out", "stunnel.pem",
            "-keyout", "stunnel.pem", "-subj", SUBJ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    pem = workdir / "stunnel.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    data = pem.read_bytes()
    assert data.index(b"BEGIN PRIVATE KEY") < data.index(b"BEGIN CERTIFICATE")  # key first
    text = text_of(pem)
    assert "Subject: C = CA, O = Example, CN = mail.example.org" in text
    assert "Public-Key: (2048 bit)" in text and "rsaEncryption" in text
    assert "Netscape Cert Type: \n                SSL Server" in text
    assert "DNS:mail.example.org" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    cert = x509.load_pem_x509_certificate(data)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=365)
    assert cert.serial_number.bit_length() > 64
    assert openssl("verify", "-CAfile", "stunnel.pem", "stunnel.pem").stdout == "stunnel.pem: OK\n"
    assert pubkey_matches(pem, pem)
    # It says what it made.
    assert "subject=C = CA, O = Example, CN = mail.example.org\n" in out
    assert "SHA256 Fingerprint=" in out and "notAfter=" in out
    assert "key and certificate: stunnel.pem (mode 0600)" in out


@needs_openssl
def test_literal_openssl_line_with_ec(workdir):
    argv = [sys.executable, "-m", "tlswrap.wrapcert", "new", "-new", "-x509", "-days", "365",
            "-config", "stunnel.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-out", "stunnel.pem", "-keyout", "stunnel.pem",
            "-subj", "/CN=127.0.0.1"]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    text = text_of("stunnel.pem")
    assert "ASN1 OID: prime256v1" in text
    assert "IP Address:127.0.0.1" in text  # an IP CN gets an IP SAN
    assert "ecdsa-with-SHA256" in text


def test_weak_default_bits_refused(workdir, capsys):
    cnf = workdir / "stunnel.cnf"
    cnf.write_text(cnf.read_text().replace("default_bits        = 2048", "default_bits = 1024"))
    line = cnf.read_text().splitlines().index("default_bits = 1024") + 1
    argv = ["new", "-config", "stunnel.cnf", "-days", "365", "-out", "stunnel.pem",
            "-keyout", "stunnel.pem", "-subj", SUBJ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"wrapcert: stunnel.cnf:{line}: default_bits = 1024: RSA keys of 1024 bits are too weak:"
        " use at least 2048 bits"
    )
    assert err.count("\n") == 1
    assert sorted(os.listdir(workdir)) == ["stunnel.cnf"]


def test_weak_newkey_refused(workdir, capsys):
    assert main(["new", "-newkey", "rsa:1024", "-subj", SUBJ, "-out", "x.pem"]) == 1
    assert "RSA keys of 1024 bits are too weak" in capsys.readouterr().err
    assert not (workdir / "x.pem").exists()


# --- acceptance 3: the dialogue on a terminal -------------------------------------------------


class Pty:
    def __init__(self, argv, cwd):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 30.0) -> None:
        want = text.encode()
        deadline = time.monotonic() + timeout
        while want not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"no {text!r} in {self.seen.decode(errors='replace')!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {text!r}: {self.seen.decode(errors='replace')!r}")
            self.seen += chunk
        self.seen = self.seen[self.seen.index(want) + len(want) :]

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def test_prompts_on_a_terminal(workdir, capsys):
    term = Pty([sys.executable, "-m", "tlswrap.wrapcert", "new", "-config", "stunnel.cnf",
                "-newkey", "ec:P-256", "-out", "mx.pem"], workdir)  # fmt: skip
    try:
        term.expect(
            "You are about to be asked to enter information that will be incorporated\r\n"
            "into your certificate request.\r\n"
            "What you are about to enter is what is called a Distinguished Name or a DN.\r\n"
            "There are quite a few fields but you can leave some blank\r\n"
            "For some fields there will be a default value,\r\n"
            "If you enter '.', the field will be left blank.\r\n"
            "-----\r\n"
        )
        term.expect("Country Name (2 letter code) [CA]:")
        term.send("DEU")
        term.expect("String too long, must be at most 2 bytes long")
        term.expect("Country Name (2 letter code) [CA]:")
        term.send("DE")
        term.expect("State or Province Name (full name) [Ontario]:")
        term.send(".")
        term.expect("Locality Name (eg, city) [Toronto]:")
        term.send("")
        term.expect("Organization Name (eg, company) [Example Mail]:")
        term.send("Acme, M\u00fcller & Co")
        term.expect("Organizational Unit Name (eg, section) [Mail Service]:")
        term.send(".")
        term.expect("Common Name (host name of your mail server) [localhost]:")
        term.send("mx.example.net")
        term.expect("SHA256 Fingerprint=")
    finally:
        status = term.close()
    assert status == 0
    assert main(["show", "mx.pem"]) == 0
    assert capsys.readouterr().out.startswith(
        'subject=C = DE, L = Toronto, O = "Acme, M\\C3\\BCller & Co", CN = mx.example.net\n'
    )
    assert "DNS:mx.example.net" in text_of(workdir / "mx.pem") if OPENSSL else True


def test_without_a_terminal_defaults_are_used(workdir, capsys):
    assert main(["new", "-config", "stunnel.cnf", "-newkey", "ec", "-out", "d.pem"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "subject=C = CA, ST = Ontario, L = Toronto, O = Example Mail, OU = Mail Service, "
        "CN = localhost\n"
    )


def test_without_a_terminal_or_defaults_it_fails_clearly(workdir, capsys):
    assert main(["new", "-out", "d.pem"]) == 1
    assert capsys.readouterr().err.startswith(
        "wrapcert: no subject: give -subj /CN=host.example.org"
    )
    assert not (workdir / "d.pem").exists()


def test_prompt_no_config(workdir, capsys):
    (workdir / "auto.cnf").write_text(
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n"
        "[dn]\nC = CA\nO = Example\n0.CN = mail.example.org\n"
        "[ext]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = @alt\n"
        "nsComment = made by a test\n"
        "[alt]\nDNS.1 = mail.example.org\nDNS.2 = imap.example.org\nIP.1 = ::1\n"
    )
    assert main(["new", "-config", "auto.cnf", "-newkey", "ed25519", "-out", "a.pem"]) == 0
    assert (
        "subjectAltName: DNS:mail.example.org, DNS:imap.example.org, IP:::1"
        in capsys.readouterr().out
    )
    if OPENSSL:
        text = text_of(workdir / "a.pem")
        assert "Netscape Comment: \n                made by a test" in text
        assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text


# --- files ----------------------------------------------------------------------------------


def test_existing_files_need_force(workdir, capsys):
    base = ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "c.pem"]
    assert main(base) == 0
    before = (workdir / "c.pem").read_bytes()
    assert main(base) == 1
    assert capsys.readouterr().err.endswith(
        "wrapcert: c.pem exists; not overwriting it without --force\n"
    )
    assert (workdir / "c.pem").read_bytes() == before
    assert main([*base, "--force"]) == 0
    assert (workdir / "c.pem").read_bytes() != before
    assert stat.S_IMODE((workdir / "c.pem").stat().st_mode) == 0o600
    assert [p for p in os.listdir(workdir) if p.endswith(".tmp")] == []


def test_separate_key_file(workdir, capsys):
    os.umask(0o022)
    assert main(["new", "--key-type", "ec:P-384", "--subject", "/CN=x.example", "--out", "x.crt",
                 "--key-out", "x.key", "--san", "DNS:x.example,DNS:y.example",
                 "--days", "10"]) == 0  # fmt: skip
    assert stat.S_IMODE((workdir / "x.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((workdir / "x.crt").stat().st_mode) == 0o644
    assert b"PRIVATE KEY" not in (workdir / "x.crt").read_bytes()
    assert "subjectAltName: DNS:x.example, DNS:y.example" in capsys.readouterr().out
    if OPENSSL:
        assert pubkey_matches(workdir / "x.crt", workdir / "x.key")


def test_key_file_is_never_readable_by_others(workdir, monkeypatch):
    """Every file created while writing a key is created 0600 (checked at os.open time)."""
    modes = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kw):
        if flags & os.O_CREAT:
            modes.append((os.path.basename(path), flags & os.O_EXCL, mode))
        return real_open(path, flags, mode, *args, **kw)

    monkeypatch.setattr(os, "open", spy)
    assert (
        main(
            ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "c.pem", "-keyout", "k.pem"]
        )
        == 0
    )
    key_files = [m for m in modes if m[0].startswith(".k.pem")]
    assert key_files and all(excl and mode == 0o600 for _, excl, mode in key_files)


# --- help and usage -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["new", "--help"], ["show", "-h"],
                                  ["ca", "new", "--help"], ["issue", "--help"], ["check", "--help"],
                                  ["tlsa", "--help"], ["csr", "--help"]])  # fmt: skip
def test_help(argv, capsys):
    assert main(argv) == 0
    assert "usage: wrapcert" in capsys.readouterr().out


def test_usage_errors(capsys):
    assert main(["new", "-frobnicate"]) == 2
    assert capsys.readouterr().err == (
        "wrapcert: unrecognized arguments: -frobnicate (see 'wrapcert new --help')\n"
    )
    assert main(["new", "-days", "many"]) == 2
    assert (
        "wrapcert: argument -days/--days: not a number: 'many' (use the digits 0-9)"
        in capsys.readouterr().err
    )
    assert main([]) == 2


def test_bad_subject_and_san_messages(workdir, capsys):
    assert main(["new", "-subj", "/CN=a/colour=red", "-out", "x.pem"]) == 1
    assert (
        capsys.readouterr().err
        == "wrapcert: subject '/CN=a/colour=red': unknown attribute 'colour'\n"
    )
    assert main(["new", "-subj", "/CN=a", "--san", "IP:1.2.3", "-out", "x.pem"]) == 1
    assert capsys.readouterr().err == "wrapcert: --san: subjectAltName: bad IP address '1.2.3'\n"
    assert main(["new", "-subj", "/C=Canada/CN=a", "-out", "x.pem"]) == 1
    assert (
        capsys.readouterr().err
        == "wrapcert: bad subject: country 'Canada' must be a 2-letter code such as CA\n"
    )
    assert not (workdir / "x.pem").exists()


# --- acceptance 6: check --------------------------------------------------------------------


def _write_cert(path, days, now=None, san=True, key=None):
    key = key or build.generate_key(KeySpec("ec", curve="P-256"))
    name = build.make_name(parse_subj("/CN=mail.example.org"))
    specs = build.server_extensions(key, [("DNS", "mail.example.org")] if san else [])
    cert = build.issue(key.public_key(), name, key, name, specs, days, now=now)
    path.write_bytes(build.key_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
    return cert


def test_check_exit_codes(tmp_path, capsys):
    now = datetime.datetime.now(datetime.UTC)
    _write_cert(tmp_path / "good.pem", 365)
    _write_cert(tmp_path / "soon.pem", 10)
    _write_cert(tmp_path / "old.pem", 30, now=now - datetime.timedelta(days=400))
    _write_cert(tmp_path / "future.pem", 30, now=now + datetime.timedelta(days=2))
    _write_cert(tmp_path / "nosan.pem", 365, san=False)
    assert main(["check", str(tmp_path / "good.pem")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'good.pem'}: valid for 36")
    assert main(["check", str(tmp_path / "good.pem"), "--days", "400"]) == 1
    capsys.readouterr()
    assert main(["check", str(tmp_path / "soon.pem")]) == 1
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'soon.pem'}: expiring in 9 days (on ")
    assert main(["check", str(tmp_path / "soon.pem"), "--days", "5"]) == 0
    assert main(["check", str(tmp_path / "old.pem")]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'old.pem'}: expired on ")
    assert main(["check", str(tmp_path / "future.pem")]) == 2
    assert "not yet valid" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nosan.pem")]) == 2
    assert "no SAN" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "good.pem"), "--key", str(tmp_path / "soon.pem")]) == 2
    assert (
        capsys.readouterr().err == f"{tmp_path / 'good.pem'}: key does not match the certificate\n"
    )
    assert main(["check", str(tmp_path / "missing.pem")]) == 3
    assert capsys.readouterr().err.startswith("wrapcert: ")


def test_check_weak_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = build.make_name(parse_subj("/CN=w.example"))
    cert = build.issue(
        key.public_key(), name, key, name, build.server_extensions(key, [("DNS", "w.example")]), 30
    )
    now = datetime.datetime.now(datetime.UTC)
    assert check_certificate(cert, key, 5, now) == (
        2,
        "weak key: RSA 1024 bits (need at least 2048)",
    )


# --- acceptance 7: a small CA, issue, csr, tlsa -----------------------------------------------


@needs_openssl
def test_ca_and_issue_verify_with_openssl(workdir, capsys):
    assert (
        main(
            [
                "ca",
                "new",
                "-subj",
                "/O=Example/CN=Example Mail CA",
                "-out",
                "ca.pem",
                "-keyout",
                "ca.key",
            ]
        )
        == 0
    )
    assert stat.S_IMODE((workdir / "ca.key").stat().st_mode) == 0o600
    assert main(["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "-subj", "/CN=mail.example.org",
                 "--san", "DNS:mail.example.org,DNS:imap.example.org",
                 "-out", "server.pem"]) == 0  # fmt: skip
    run = openssl(
        "verify", "-CAfile", "ca.pem", "-verify_hostname", "imap.example.org", "server.pem"
    )
    assert run.stdout == "server.pem: OK\n"
    text = text_of("server.pem")
    assert "Issuer: O = Example, CN = Example Mail CA" in text
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    assert "X509v3 Authority Key Identifier" in text
    assert pubkey_matches("server.pem", "server.pem")
    # RSA leaf from the same CA, key in its own file, chain appended.
    assert main(["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "-subj", "/CN=10.0.0.7",
                 "-newkey", "rsa:3072", "-out", "ip.crt", "-keyout", "ip.key",
                 "--chain"]) == 0  # fmt: skip
    assert (
        openssl("verify", "-CAfile", "ca.pem", "-verify_ip", "10.0.0.7", "ip.crt").stdout
        == "ip.crt: OK\n"
    )
    assert (workdir / "ip.crt").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    # A self-signed server certificate is not a CA.
    assert main(["new", "-subj", "/CN=x.example", "-newkey", "ec", "-out", "self.pem"]) == 0
    capsys.readouterr()
    assert main(["issue", "--ca", "self.pem", "-subj", "/CN=y.example", "-out", "y.pem"]) == 1
    assert "not a CA certificate" in capsys.readouterr().err


@needs_openssl
def test_csr_then_issue(workdir, capsys):
    argv = ["csr", "-config", "stunnel.cnf", "-subj", "/O=Example/CN=smtp.example.org",
            "--san", "DNS:smtp.example.org,DNS:mx.example.org",
            "-out", "req.csr", "-keyout", "req.key"]  # fmt: skip
    assert main(argv) == 0
    assert stat.S_IMODE((workdir / "req.key").stat().st_mode) == 0o600
    run = openssl("req", "-verify", "-noout", "-text", "-in", "req.csr")
    assert "Subject: O = Example, CN = smtp.example.org" in run.stdout
    assert "DNS:smtp.example.org, DNS:mx.example.org" in run.stdout
    assert "Netscape Cert Type" not in run.stdout  # x509_extensions are for certificates only
    assert (
        main(["ca", "new", "--subject", "/CN=Test CA", "--out", "ca.pem", "--key-out", "ca.key"])
        == 0
    )
    assert (
        main(
            [
                "issue",
                "--ca",
                "ca.pem",
                "--ca-key",
                "ca.key",
                "--csr",
                "req.csr",
                "--out",
                "smtp.crt",
            ]
        )
        == 0
    )
    assert (
        openssl(
            "verify", "-CAfile", "ca.pem", "-verify_hostname", "mx.example.org", "smtp.crt"
        ).returncode
        == 0
    )
    assert pubkey_matches("smtp.crt", "req.key")


def test_csr_needs_a_key_file(workdir, capsys):
    assert main(["csr", "-subj", "/CN=a.example", "-out", "r.csr"]) == 1
    assert capsys.readouterr().err == (
        "wrapcert: -keyout FILE is required: the key stays here, the request goes to the CA\n"
    )


def test_ca_key_must_be_separate(workdir, capsys):
    assert main(["ca", "new", "-subj", "/CN=CA", "-out", "ca.pem"]) == 1
    assert "give --key-out FILE" in capsys.readouterr().err
    assert not (workdir / "ca.pem").exists()


@needs_openssl
@pytest.mark.parametrize("keytype", ["rsa:2048", "ec:P-256", "ed25519"])
def test_tlsa_matches_openssl_pipeline(workdir, capsys, keytype):
    assert main(["new", "-subj", "/CN=mail.example.org", "-newkey", keytype, "-out", "c.pem"]) == 0
    capsys.readouterr()
    pub = subprocess.run(
        [OPENSSL, "x509", "-pubkey", "-noout", "-in", "c.pem"], capture_output=True, check=True
    ).stdout
    der = subprocess.run(
        [OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True, check=True
    ).stdout
    digest = hashlib.sha256(der).hexdigest()
    assert main(["tlsa", "c.pem", "--port", "993", "--host", "mail.example.org"]) == 0
    assert capsys.readouterr().out == f"_993._tcp.mail.example.org. IN TLSA 3 1 1 {digest}\n"
    assert main(["tlsa", "c.pem"]) == 0
    assert capsys.readouterr().out == f"3 1 1 {digest}\n"


def test_prompt_dn_unit():
    from tlswrap.wrapcert.reqconf import DNField
    from tlswrap.wrapcert.request import PREAMBLE, prompt_dn

    class Tty(io.StringIO):
        def isatty(self):
            return True

    fields = [
        DNField("C", "2.5.4.6", "Country", default="CA", minlen=2, maxlen=2),
        DNField("O", "2.5.4.10", "Org", default="Ex"),
        DNField("+OU", "2.5.4.11", "Unit", multi=True),
        DNField("CN", "2.5.4.3", "Name", value="fixed"),
    ]
    err = io.StringIO()
    rdns = prompt_dn(fields, Tty("\n\nMail\n"), err, interactive=True)
    assert rdns == [
        [("2.5.4.6", "CA")],
        [("2.5.4.10", "Ex"), ("2.5.4.11", "Mail")],
        [("2.5.4.3", "fixed")],
    ]
    assert err.getvalue() == PREAMBLE + "Country [CA]:Org [Ex]:Unit []:Name []:fixed\n"
    with pytest.raises(Exception, match="end of input"):
        prompt_dn(fields, Tty(""), io.StringIO(), interactive=True)


# --- more openssl spellings -----------------------------------------------------------------


@needs_openssl
def test_newkey_ec_parameter_file(workdir, capsys):
    openssl("ecparam", "-name", "secp384r1", "-out", "p384.pem")
    assert main(["new", "-newkey", "ec:p384.pem", "-subj", "/CN=e.example", "-out", "e.pem"]) == 0
    assert "key type: EC secp384r1" in capsys.readouterr().out
    (workdir / "junk.pem").write_text("not parameters\n")
    assert main(["new", "-newkey", "ec:junk.pem", "-subj", "/CN=e.example", "-out", "f.pem"]) == 1
    assert capsys.readouterr().err == (
        "wrapcert: junk.pem: not a named-curve EC parameter file for P-256, P-384 or P-521\n"
    )


def test_existing_key_is_reused(workdir, capsys):
    assert (
        main(
            ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "a.crt", "-keyout", "a.key"]
        )
        == 0
    )
    assert (
        main(["new", "-key", "a.key", "-subj", "/CN=a.example", "-days", "30", "-out", "b.crt"])
        == 0
    )
    a = x509.load_pem_x509_certificate((workdir / "a.crt").read_bytes())
    b = x509.load_pem_x509_certificate((workdir / "b.crt").read_bytes())
    assert a.public_key() == b.public_key()
    assert b"PRIVATE KEY" not in (workdir / "b.crt").read_bytes()


def test_addext_and_extensions_section(workdir, capsys):
    (workdir / "x.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = plain\n[dn]\nCN = Name\n"
        "[plain]\nnsCertType = server\n"
        "[strict]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
    )
    argv = ["new", "-config", "x.cnf", "-extensions", "strict",
            "-addext", "subjectAltName = DNS:s.example",
            "-subj", "/CN=s.example", "-newkey", "ec", "-out", "s.pem"]  # fmt: skip
    assert main(argv) == 0
    cert = x509.load_pem_x509_certificate(
        (workdir / "s.pem").read_bytes().split(b"-----END PRIVATE KEY-----")[1].strip()
    )
    names = {e.oid._name for e in cert.extensions}
    assert names == {
        "basicConstraints",
        "keyUsage",
        "extendedKeyUsage",
        "subjectAltName",
        "subjectKeyIdentifier",
    }
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).critical


def test_default_keyfile_from_config(workdir, capsys):
    (workdir / "k.cnf").write_text(
        "[req]\ndefault_keyfile = server.key\nprompt = no\ndistinguished_name = dn\n"
        "[dn]\nCN = k.example\n"
    )
    assert main(["new", "-config", "k.cnf", "-newkey", "ec", "-out", "server.crt"]) == 0
    assert stat.S_IMODE((workdir / "server.key").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in (workdir / "server.crt").read_bytes()


def test_encrypt_key_yes_is_explained(workdir, capsys):
    (workdir / "e.cnf").write_text("[req]\nencrypt_key = yes\n")
    assert main(["new", "-config", "e.cnf", "-subj", "/CN=x", "-out", "x.pem"]) == 1
    assert capsys.readouterr().err.startswith(
        "wrapcert: e.cnf:2: encrypt_key = yes is not supported"
    )
    assert (
        main(
            [
                "new",
                "-config",
                "e.cnf",
                "-nodes",
                "-newkey",
                "ec",
                "-subj",
                "/CN=x",
                "-out",
                "x.pem",
            ]
        )
        == 0
    )


# --- an output that is also an input --------------------------------------------------------


def _private_key_of(path):
    from tlswrap.wrapcert.files import find_private_key

    return find_private_key(Path(path).read_bytes(), str(path), required=False)


def _public_der(holder):
    return holder.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _combined(workdir, name="server.pem"):
    assert main(["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", name]) == 0
    return _private_key_of(workdir / name)


@pytest.mark.parametrize("alias", [None, "hardlink", "symlink"])
def test_renewing_a_combined_pem_keeps_its_key(workdir, capsys, alias):
    """stunnel's one-file PEM renewed in place: key and new certificate, 0600, same key."""
    key = _combined(workdir)
    old = (workdir / "server.pem").read_bytes()
    key_arg = "server.pem"
    if alias == "hardlink":
        os.link(workdir / "server.pem", workdir / "alias.pem")
        key_arg = "alias.pem"
    elif alias == "symlink":
        os.symlink("server.pem", workdir / "alias.pem")
        key_arg = "alias.pem"
    capsys.readouterr()
    os.umask(0o022)
    argv = ["new", "-key", key_arg, "-out", "server.pem", "--force", "-subj", "/CN=a.example"]
    assert main(argv) == 0
    assert "key and certificate: server.pem (mode 0600)" in capsys.readouterr().out
    data = (workdir / "server.pem").read_bytes()
    assert data != old
    kept = _private_key_of(workdir / "server.pem")
    assert kept is not None and _public_der(kept) == _public_der(key)
    cert = x509.load_pem_x509_certificate(data)
    assert _public_der(cert) == _public_der(key)
    assert stat.S_IMODE((workdir / "server.pem").stat().st_mode) == 0o600
    assert [p for p in os.listdir(workdir) if p.endswith(".tmp")] == []


def test_issue_renews_a_combined_pem_with_its_key(workdir, capsys):
    assert main(["ca", "new", "-subj", "/CN=Test CA", "-out", "ca.pem", "-keyout", "ca.key"]) == 0
    key = _combined(workdir)
    argv = ["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "-key", "server.pem",
            "-out", "server.pem", "--force", "-subj", "/CN=a.example"]  # fmt: skip
    assert main(argv) == 0
    kept = _private_key_of(workdir / "server.pem")
    assert kept is not None and _public_der(kept) == _public_der(key)
    assert stat.S_IMODE((workdir / "server.pem").stat().st_mode) == 0o600


def test_key_written_back_to_its_own_file_is_allowed(workdir, capsys):
    key = _combined(workdir, "k.pem")
    argv = ["new", "-key", "k.pem", "-keyout", "k.pem", "-out", "c.pem", "--force",
            "-subj", "/CN=a.example"]  # fmt: skip
    assert main(argv) == 0
    kept = _private_key_of(workdir / "k.pem")
    assert kept is not None and _public_der(kept) == _public_der(key)


EC_PARAMS = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
_OVERWRITES = [
    (["csr", "-key", "k.pem", "-out", "k.pem"], "-out k.pem is also the -key file"),
    (["new", "-key", "k.pem", "-keyout", "k2.pem", "-out", "k.pem"],
     "-out k.pem is also the -key file"),
    (["new", "-config", "stunnel.cnf", "-out", "stunnel.cnf"],
     "-out stunnel.cnf is also the -config file"),
    (["new", "-config", "stunnel.cnf", "-out", "c.pem", "-keyout", "stunnel.cnf"],
     "-keyout stunnel.cnf is also the -config file"),
    (["new", "-newkey", "ec:params.pem", "-out", "params.pem"],
     "-out params.pem is also the -newkey file"),
    (["ca", "new", "-key", "k.pem", "-keyout", "k2.pem", "-out", "k.pem"],
     "-out k.pem is also the -key file"),
    (["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "-out", "ca.pem"],
     "-out ca.pem is also the --ca file"),
    (["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "-out", "x.pem", "-keyout", "ca.key"],
     "-keyout ca.key is also the --ca-key file"),
    (["issue", "--ca", "ca.pem", "--ca-key", "ca.key", "--csr", "r.csr", "-out", "r.csr"],
     "-out r.csr is also the --csr file"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), _OVERWRITES)
def test_an_output_that_is_an_input_is_refused(workdir, capsys, argv, message):
    """Every input against every output: refused before anything is written, files intact."""
    assert main(["ca", "new", "-subj", "/CN=Test CA", "-out", "ca.pem", "-keyout", "ca.key"]) == 0
    _combined(workdir, "k.pem")
    assert main(["csr", "-newkey", "ec", "-subj", "/CN=r.example", "-out", "r.csr",
                 "-keyout", "r.key"]) == 0  # fmt: skip
    (workdir / "params.pem").write_text(EC_PARAMS)
    before = {p.name: p.read_bytes() for p in workdir.iterdir()}
    capsys.readouterr()
    rest = [] if "-subj" in argv else ["-subj", "/CN=a.example"]
    assert main([*argv, *rest, "--force"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"wrapcert: {message}") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in workdir.iterdir()} == before


# --- clear errors, never a traceback --------------------------------------------------------


def _fails(argv, capsys, status=1) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("wrapcert: ") and err.count("\n") == 1, err
    return err


def test_idn_san_is_written_as_its_a_label(workdir, capsys):
    names = "DNS:bücher.example,DNS:*.Bücher.example,email:info@bücher.example"
    argv = ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "i.pem", "--san", names]
    assert main(argv) == 0
    assert (
        "subjectAltName: DNS:xn--bcher-kva.example, DNS:*.xn--bcher-kva.example, "
        "email:info@xn--bcher-kva.example" in capsys.readouterr().out
    )
    cert = x509.load_pem_x509_certificate((workdir / "i.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "xn--bcher-kva.example",
        "*.xn--bcher-kva.example",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--san", "email:é@example.org"], "wrapcert: --san: subjectAltName: email:é@example.org:"
         " the local part must be ASCII"),
        (["--san", "DNS:bü cher.example"], "wrapcert: --san: subjectAltName: bad DNS name"),
        (["--san", "URI:https://bücher.example/"], "wrapcert: --san: subjectAltName: URI:"),
        (["--san", "RID:1.40.5"], "wrapcert: --san: subjectAltName: RID:1.40.5: "),
        (["--san", "RID:2.340282366920938463463374607431768211376"],
         "wrapcert: --san: subjectAltName: RID:2.3402"),
        (["-addext", "extendedKeyUsage=1.2." + "9" * 400], "wrapcert: -addext: extendedKeyUsage:"),
        (["-subj", "/CN=a/1.2.340282366920938463463374607431768211456=x"],
         "wrapcert: subject '/CN=a/1.2.340282366920938463463374607431768211456=x': bad OID"),
        (["-days", "99999999"], "wrapcert: -days 99999999: the certificate would expire after"
         " 9999-12-31"),
        (["-days", "3000000"], "wrapcert: -days 3000000: the certificate would expire after"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors(workdir, capsys, args, message):
    base = ["new", "-newkey", "ec", "-out", "x.pem"]
    base += [] if "-subj" in args else ["-subj", "/CN=a.example"]
    assert _fails([*base, *args], capsys).startswith(message)
    assert not (workdir / "x.pem").exists()


def test_largest_oid_arcs_are_accepted(workdir, capsys):
    """openssl takes any arc; wrapcert takes what fits 128 bits, the issue's example included."""
    argv = ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "o.pem",
            "-addext", "extendedKeyUsage=1.2.3.99999999999999999999999999",
            "--san", "RID:1.2.340282366920938463463374607431768211455"]  # fmt: skip
    assert main(argv) == 0
    assert "RID:1.2.340282366920938463463374607431768211455" in capsys.readouterr().out


@pytest.mark.parametrize("days", ["²", "٣", "1_000", "9" * 5000])
def test_days_must_be_ascii_digits(workdir, capsys, days):
    """openssl: 'Can't parse "²" as a number'; Python's int() would take it."""
    err = _fails(["new", "-newkey", "ec", "-subj", "/CN=a", "-out", "x.pem", "-days", days],
                 capsys, status=2)  # fmt: skip
    assert "argument -days/--days: " in err


def test_check_with_a_huge_days_is_no_traceback(tmp_path, capsys):
    _write_cert(tmp_path / "c.pem", 30)
    assert main(["check", str(tmp_path / "c.pem"), "--days", "99999999999"]) == 1
    assert "expiring in 29 days" in capsys.readouterr().err


def test_days_up_to_year_9999_is_accepted(workdir, capsys):
    """openssl req -days N works while notAfter stays within 9999 (GeneralizedTime)."""
    now = datetime.datetime.now(datetime.UTC)
    days = (datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC) - now).days - 1
    argv = ["new", "-newkey", "ec", "-subj", "/CN=a.example", "-out", "y.pem", "-days", str(days)]
    assert main(argv) == 0
    cert = x509.load_pem_x509_certificate((workdir / "y.pem").read_bytes())
    assert cert.not_valid_after_utc.year == 9999
