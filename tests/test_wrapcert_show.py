"""``wrapcert show`` against ``openssl x509 -subject -dates -fingerprint -noout``, byte for byte,
on certificates made by openssl (and a few made with cryptography using rarer string types)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert import x509text
from tlswrap.wrapcert.cli import main

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")

# (file stem, -newkey, -subj, extra req arguments)
OPENSSL_CORPUS = [
    ("plain", "rsa:2048", "/C=CA/O=Example/CN=mail.example.org", []),
    ("several", "ec:P-256",
     "/C=US/ST=New York/L=New York/O=Example/OU=Mail/CN=imap.example.org", []),
    ("multivalued", "ec:P-256", "/C=DE/O=Example+OU=Mail+OU=IMAP/CN=a+serialNumber=42", []),
    ("commas", "ed25519", "/O=Example, Inc./OU=a;b<c>d/CN=x+y=z", []),
    ("quotes", "ed25519", '/O=The "Best" Co/CN=back\\\\slash', []),
    ("utf8", "ec:P-384",
     "/C=CH/L=Z\u00fcrich/O=\u65e5\u672c\u8a9e/CN=M\u00fcller Stra\u00dfe \U0001f512", ["-utf8"]),
    ("latin1", "ec:P-256", "/O=Caf\u00e9/CN=x", []),
    ("email", "ec:P-256", "/CN=Postmaster/emailAddress=postmaster@example.org", []),
    ("edges", "ec:P-256", "/CN= leading/O=trailing /OU=#hash/L=#/ST= /street=in#side", []),
    ("control", "ec:P-256", "/CN=tab\there/O=bell\x07", []),
    ("many", "ed25519",
     "/DC=org/DC=example/UID=jdoe/serialNumber=1234/title=Dr/GN=John/SN=Doe/initials=JD"
     "/street=1 Main St/postalCode=12345/description=desc/dnQualifier=q/pseudonym=p"
     "/jurisdictionC=US/jurisdictionST=Delaware/businessCategory=Private Organization"
     "/name=nm/generationQualifier=III/organizationIdentifier=VATDE-123", []),
    ("longlived", "ec:P-256", "/CN=far.example", ["-days", "40000"]),
    ("shortlived", "ec:P-256", "/CN=soon.example", ["-days", "1"]),
]  # fmt: skip


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(
        [OPENSSL, *args], input=input, capture_output=True, check=True, timeout=60
    ).stdout


def _openssl_show(path) -> bytes:
    return _openssl("x509", "-subject", "-dates", "-fingerprint", "-noout", "-in", str(path))


def _cryptography_cert(
    path, name: x509.Name, not_before: datetime.datetime, days: int = 10
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = []
    for stem, newkey, subj, extra in OPENSSL_CORPUS:
        path = d / f"{stem}.pem"
        if newkey.startswith("ec:"):
            keyargs = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{newkey[3:]}"]
        else:
            keyargs = ["-newkey", newkey]
        _openssl("req", "-new", "-x509", *keyargs, "-nodes", "-keyout", str(d / f"{stem}.key"),
                 "-out", str(path), "-subj", subj, *extra)  # fmt: skip
        files.append(path)
    # DER, and a chain file (openssl shows the first certificate only).
    _openssl("x509", "-in", str(d / "utf8.pem"), "-outform", "DER", "-out", str(d / "utf8.der"))
    files.append(d / "utf8.der")
    (d / "chain.pem").write_bytes((d / "commas.pem").read_bytes() + (d / "plain.pem").read_bytes())
    files.append(d / "chain.pem")
    # A v1 certificate (no extensions), signed with openssl x509 -req.
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
             str(d / "v1.key"), "-out", str(d / "v1.csr"), "-subj", "/CN=v1.example")  # fmt: skip
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "v1.csr"),
        "-key",
        str(d / "v1.key"),
        "-out",
        str(d / "v1.pem"),
    )
    files.append(d / "v1.pem")
    # String types openssl's -subj never makes: BMP, T61, Universal, Printable, unknown OIDs,
    # and dates from 1950 to past 2050 (UTCTime to GeneralizedTime).
    odd = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "bmp \u00e9\u4e2d", _ASN1Type.BMPString),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t61 text", _ASN1Type.T61String),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "uni\u00e9", _ASN1Type.UniversalString),
            x509.NameAttribute(
                NameOID.ORGANIZATIONAL_UNIT_NAME, "Printable", _ASN1Type.PrintableString
            ),
            x509.NameAttribute(ObjectIdentifier("1.3.6.1.4.1.99999.1"), "private, oid"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "x@y.example"),
        ]
    )
    _cryptography_cert(
        d / "odd.pem",
        odd,
        datetime.datetime(1950, 3, 7, 1, 2, 3, tzinfo=datetime.UTC),
        36600,
    )
    files.append(d / "odd.pem")
    return files


def test_corpus_byte_for_byte(corpus, capsys):
    assert len(corpus) >= 16
    for path in corpus:
        expected = _openssl_show(path)
        assert main(["show", str(path)]) == 0
        got = capsys.readouterr().out.encode()
        assert got == expected, path.name


def test_every_key_type_is_in_the_corpus(corpus):
    texts = b"".join(_openssl("x509", "-noout", "-text", "-in", str(p)) for p in corpus[:13])
    for algorithm in (b"rsaEncryption", b"id-ecPublicKey", b"ED25519"):
        assert algorithm in texts


def test_sha256_and_all(corpus, capsys):
    chain = corpus[0].parent / "chain.pem"
    assert main(["show", "--sha256", "--all", str(chain)]) == 0
    got = capsys.readouterr().out.encode()
    first, second = corpus[0].parent / "commas.pem", corpus[0].parent / "plain.pem"
    expected = b"".join(
        _openssl("x509", "-subject", "-dates", "-fingerprint", "-sha256", "-noout", "-in", str(p))
        for p in (first, second)
    )
    assert got == expected


def test_several_files_and_the_console_script(corpus):
    files = [str(p) for p in corpus[:3]]
    run = subprocess.run([sys.executable, "-m", "tlswrap.wrapcert", "show", *files],
                         capture_output=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"".join(_openssl_show(p) for p in files)


def test_not_a_certificate(tmp_path, capsys):
    bad = tmp_path / "bad.pem"
    bad.write_text("hello\n")
    assert main(["show", str(bad)]) == 1
    assert (
        capsys.readouterr().err == f"wrapcert: {bad}: no certificate found (expected PEM or DER)\n"
    )
    assert main(["show", str(tmp_path / "missing.pem")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


# --- the printer on its own -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "content", "text"),
    [
        (0x17, b"261125063847Z", "Nov 25 06:38:47 2026 GMT"),
        (0x17, b"260105000000Z", "Jan  5 00:00:00 2026 GMT"),
        (0x17, b"491231235959Z", "Dec 31 23:59:59 2049 GMT"),
        (0x17, b"500101000000Z", "Jan  1 00:00:00 1950 GMT"),
        (0x18, b"21000229120000Z", "Feb 29 12:00:00 2100 GMT"),
        (0x18, b"20260102030405.123Z", "Jan  2 03:04:05.123 2026 GMT"),
        (0x17, b"2611250638Z", "Bad time value"),
    ],
)
def test_format_time(tag, content, text):
    assert x509text.format_time(tag, content) == text


@pytest.mark.parametrize(
    ("tag", "raw", "text"),
    [
        (0x0C, b"plain", "plain"),
        (0x0C, b"a,b", '"a,b"'),
        (0x0C, b'a"b', 'a\\"b'),
        (0x0C, b"a\\b", "a\\\\b"),
        (0x0C, b" x", '" x"'),
        (0x0C, b"x ", '"x "'),
        (0x0C, b"#x", '"#x"'),
        (0x0C, b"x#", "x#"),
        (0x0C, b"#", "#"),
        (0x0C, b" ", '" "'),
        (0x0C, b"caf\xc3\xa9", "caf\\C3\\A9"),
        (0x0C, b"a\x00b\x7f", "a\\00b\\7F"),
        (0x13, b"x+y", '"x+y"'),
        (0x14, b"caf\xe9", "caf\\C3\\A9"),
        (0x1E, "\u4e2d".encode("utf-16-be"), "\\E4\\B8\\AD"),
        (0x02, b"\x05", "#020105"),
    ],
)
def test_format_string(tag, raw, text):
    whole = bytes([tag, len(raw)]) + raw
    assert x509text.format_string(tag, raw, whole) == text


def test_load_certificates_errors():
    with pytest.raises(TlswrapError, match=r"^x: no certificate found"):
        x509text.load_certificates(b"\x30\x03\x02\x01\x01", "x")
    with pytest.raises(x509text.DERError):
        x509text.parse_certificate(b"\x30\x05\x30\x03\x02\x01")


def test_openssl_spelling_is_accepted(corpus, capsys):
    path = str(corpus[0])
    argv = ["show", "-subject", "-dates", "-fingerprint", "-noout", "-in", path]
    assert main(argv) == 0
    assert capsys.readouterr().out.encode() == _openssl_show(path)
    assert main(["show"]) == 1
    assert capsys.readouterr().err == "wrapcert: show: give at least one certificate file\n"


_KEY = ec.generate_private_key(ec.SECP256R1())
_ALPHABET = ' #"\\,+;<>=/a\u00e9\u4e2d\U0001f512\t\x01'
_TYPES = [_ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString]


def _hypothesis_strategy():
    from hypothesis import strategies as st

    value = st.text(alphabet=_ALPHABET, min_size=1, max_size=6)
    attr = st.tuples(
        st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME]),
        value,
        st.sampled_from(_TYPES),
    )
    # A BMPString holds no character beyond U+FFFF (openssl refuses the surrogate pairs).
    attr = attr.filter(lambda a: a[2] != _ASN1Type.BMPString or all(ord(c) <= 0xFFFF for c in a[1]))
    rdn = st.lists(attr, min_size=1, max_size=2, unique_by=lambda a: a[0])
    return st.lists(rdn, min_size=1, max_size=3)


def test_random_names_match_openssl(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings

    d = tmp_path_factory.mktemp("random")

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_hypothesis_strategy())
    def check(rdns):
        name = x509.Name(
            [
                x509.RelativeDistinguishedName([x509.NameAttribute(o, v, t) for o, v, t in rdn])
                for rdn in rdns
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(_KEY.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(_KEY, hashes.SHA256())
        )  # fmt: skip
        path = d / "r.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        der = cert.public_bytes(serialization.Encoding.DER)
        assert x509text.show(der).encode() == _openssl_show(path)

    check()
