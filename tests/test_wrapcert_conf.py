"""The pure parts of wrapcert: openssl-style config reader, [req] settings, extensions, -subj."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tlswrap.errors import ConfigError, TlswrapError
from tlswrap.wrapcert.dn import format_subj, parse_subj
from tlswrap.wrapcert.extconf import parse_extension, parse_san
from tlswrap.wrapcert.opensslconf import parse_conf
from tlswrap.wrapcert.reqconf import KeySpec, parse_key_type, read_req

SRC = Path(__file__).resolve().parent.parent / "src" / "tlswrap" / "wrapcert"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stunnel.cnf"


@pytest.mark.parametrize("module", ["opensslconf", "reqconf", "extconf", "dn", "x509text"])
def test_pure_modules_import_no_io(module):
    tree = ast.parse((SRC / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"trio", "socket", "os", "subprocess", "cryptography", "OpenSSL"}


# --- the reader -----------------------------------------------------------------------------


def conf(text: str, env=None):
    return parse_conf(text, "t.cnf", env)


def values(c, section):
    return [(e.name, e.value, e.lineno) for e in c.section(section)]


def test_sections_comments_and_blanks():
    c = conf("a = 1 # comment\n\n[ req ]  # the section\n  key   =   some value  \n#x = y\n")
    assert values(c, "default") == [("a", "1", 1)]
    assert values(c, "req") == [("key", "some value", 4)]


def test_quotes_escapes_and_continuation():
    c = conf('a = "x # y"  \nb = \'  z \'\nc = one\\\n two\nd = a\\tb\\#c\\\\\ne = "q\\"r"\n')
    assert [e.value for e in c.section("default")] == [
        "x # y",
        "  z ",
        "one two",
        "a\tb#c\\",
        'q"r',
    ]
    assert c.get("default", "d").lineno == 5


def test_variable_expansion_forms():
    text = (
        "dir = /etc/ssl\n"
        "[ca]\n"
        "base = $dir/ca\n"
        "key = ${base}/key.pem\n"
        "p = $(dir)x\n"
        "[other]\n"
        "a = ${ca::base}-$ca::key\n"
        "home = $ENV::HOME\n"
        "h2 = ${ENV::HOME}\n"
    )
    c = conf(text, {"HOME": "/root"})
    assert c.get("ca", "key").value == "/etc/ssl/ca/key.pem"
    assert c.get("ca", "p").value == "/etc/sslx"
    assert c.get("other", "a").value == "/etc/ssl/ca-/etc/ssl/ca/key.pem"
    assert c.get("other", "home").value == "/root"
    assert c.get("other", "h2").value == "/root"


def test_last_definition_wins_and_section_reopens():
    c = conf("[s]\na = 1\n[t]\n[s]\na = 2\n")
    assert c.get("s", "a").value == "2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[req\n", "t.cnf:1: missing ']' after section name"),
        ("[]\n", "t.cnf:1: invalid section name '[]'"),
        ("x\n", "t.cnf:1: missing '=' after 'x'"),
        ("= 3\n", "t.cnf:1: expected 'name = value', got '= 3'"),
        ("\n\na = $nope\n", "t.cnf:3: variable $nope has no value"),
        ("a = ${s::b}\n", "t.cnf:1: variable $s::b has no value"),
        ("a = ${x\n", "t.cnf:1: missing closing '}' in variable reference"),
        ("a = $\n", "t.cnf:1: '$' without a variable name (write '\\$' for a dollar)"),
        ('a = "open\n', 't.cnf:1: missing closing quote " in value'),
        (".include /etc/x.cnf\n", "t.cnf:1: directive '.include' is not supported"),
    ],
)
def test_reader_errors(text, message):
    with pytest.raises(ConfigError) as info:
        conf(text)
    assert str(info.value) == message


def test_variable_defined_later_is_an_error():
    with pytest.raises(ConfigError, match=r"t.cnf:1: variable \$b has no value"):
        conf("a = $b\nb = 1\n")


# --- [req] ----------------------------------------------------------------------------------


def test_example_stunnel_cnf():
    s = read_req(parse_conf(EXAMPLE.read_text(), "stunnel.cnf"))
    assert s.key == KeySpec("rsa", 2048)
    assert s.md == "sha256" and not s.encrypt_key and s.prompt
    assert [f.key for f in s.dn_fields] == [
        "countryName", "stateOrProvinceName", "localityName", "organizationName",
        "organizationalUnitName", "0.commonName",
    ]  # fmt: skip
    c = s.dn_fields[0]
    assert (c.prompt, c.default, c.minlen, c.maxlen) == ("Country Name (2 letter code)", "CA", 2, 2)
    assert s.dn_fields[-1].oid == "2.5.4.3" and s.dn_fields[-1].default == "localhost"
    assert [(e.name, e.value) for e in s.x509_extensions] == [("nsCertType", (1,))]


def test_debian_style_openssl_cnf_is_accepted():
    text = (
        "HOME = .\noid_section = new_oids\n[ new_oids ]\ntsa_policy1 = 1.2.3.4.1\n"
        "[ req ]\ndefault_bits = 2048\ndefault_keyfile = privkey.pem\n"
        "distinguished_name = req_distinguished_name\nattributes = req_attributes\n"
        "x509_extensions = v3_ca\nstring_mask = utf8only\n"
        "[ req_distinguished_name ]\ncountryName = Country Name (2 letter code)\n"
        "countryName_default = AU\ncommonName = Common Name\ncommonName_max = 64\n"
        "[ req_attributes ]\nchallengePassword = A challenge password\n"
        "[ v3_ca ]\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always,issuer\n"
        "basicConstraints = critical,CA:true\n[ ca ]\nanything = goes\n"
    )
    s = read_req(parse_conf(text, "openssl.cnf"))
    assert s.default_keyfile == "privkey.pem"
    assert [f.key for f in s.dn_fields] == ["countryName", "commonName"]
    assert [(e.name, e.critical, e.value) for e in s.x509_extensions] == [
        ("subjectKeyIdentifier", False, "hash"),
        ("authorityKeyIdentifier", False, ("always", "")),
        ("basicConstraints", True, (True, None)),
    ]


def test_prompt_no_takes_values_and_multi_valued_fields():
    text = (
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nC = CA\nO = Ex\n+OU = Mail\n1.CN = a\n"
    )
    s = read_req(parse_conf(text, "t.cnf"))
    assert [(f.oid, f.value, f.multi) for f in s.dn_fields] == [
        ("2.5.4.6", "CA", False), ("2.5.4.10", "Ex", False),
        ("2.5.4.11", "Mail", True), ("2.5.4.3", "a", False),
    ]  # fmt: skip


def test_randfile_is_accepted_without_effect():
    s = read_req(
        parse_conf("RANDFILE = $ENV::HOME/.rnd\n[req]\nRANDFILE = x\n", "t.cnf", {"HOME": "/"})
    )
    assert s.dn_fields == [] and s.key is None


REQ_ERRORS = [
    ("[req]\ndefault_bits = 1024\n",
     "t.cnf:2: default_bits = 1024: RSA keys of 1024 bits are too weak: use at least 2048 bits"),
    ("[req]\ndefault_bits = lots\n", "t.cnf:2: default_bits = 'lots': expected a number"),
    ("[req]\ndefault_bits = --2048\n", "t.cnf:2: default_bits = '--2048': expected a number"),
    ("[req]\ndefault_bits = \u0663072\n",
     "t.cnf:2: default_bits = '\u0663072': expected a number (ASCII digits)"),
    ("[req]\ndefault_bits = 9999999999999999999999999999\n",
     "t.cnf:2: default_bits = 9999999999999999999999999999: above 16384 bits"),
    ("[req]\nfancy = 1\n", "t.cnf:2: unknown [req] entry 'fancy'"),
    ("[req]\ninput_password = x\n", "t.cnf:2: input_password is not supported by wrapcert"),
    ("[req]\ndefault_md = sha1\n",
     "t.cnf:2: default_md = sha1: too weak for signatures; use sha256"),
    ("[req]\ndefault_md = whirl\n", "t.cnf:2: default_md = whirl: use sha256, sha384 or sha512"),
    ("[req]\nstring_mask = nombstr\n",
     "t.cnf:2: string_mask = nombstr: only utf8only is supported"),
    ("[req]\ndistinguished_name = dn\n", "t.cnf:2: distinguished_name section [dn] not found"),
    ("[req]\ndistinguished_name = dn\n[dn]\n", "t.cnf:3: [dn] defines no fields"),
    ("[req]\ndistinguished_name = dn\n[dn]\nCN = x\nfavouriteColour = Colour\n",
     "t.cnf:5: unknown distinguished-name field 'favouriteColour'"),
    ("[req]\ndistinguished_name = dn\n[dn]\n0.CN = x\nCN_default = y\n",
     "t.cnf:5: 'CN_default' belongs to no field: declare 'CN = prompt text' in [dn]"),
    ("[req]\ndistinguished_name = dn\n[dn]\nCN = x\nCN_max = many\n",
     "t.cnf:5: CN_max = 'many': expected a number"),
    ("[req]\ndistinguished_name = dn\n[dn]\nCN = x\nCN_max = \u00b2\n",
     "t.cnf:5: CN_max = '\u00b2': expected a number (ASCII digits)"),
    ("[req]\ndistinguished_name = dn\n[dn]\nCN = x\nCN_min = --1\n",
     "t.cnf:5: CN_min = '--1': expected a number"),
    ("[req]\ndistinguished_name = dn\n[dn]\nCN = x\n0.1.40.5 = y\n",
     "t.cnf:5: bad OID '1.40.5': the second arc must be below 40 when the first is 0 or 1"),
    ("[req]\nx509_extensions = ext\n", "t.cnf:2: extension section [ext] not found"),
    ("[req]\nx509_extensions = ext\n[ext]\nfrobnicate = yes\n",
     "t.cnf:4: unknown extension 'frobnicate'"),
    ("[req]\nx509_extensions = ext\n[ext]\ncrlDistributionPoints = URI:x\n",
     "t.cnf:4: extension 'crlDistributionPoints' is not supported by wrapcert"),
    ("[req]\nreq_extensions = ext\n[ext]\nnsCertType = server, webserver\n",
     "t.cnf:4: nsCertType: unknown flag 'webserver' (known: client, server, email, objsign,"
     " reserved, sslCA, emailCA, objCA)"),
    ("[req]\nx509_extensions = e\n[e]\nsubjectAltName = @alt\n[alt]\nDNS.1 = ok\nIP.1 = 1.2.3\n",
     "t.cnf:7: subjectAltName: bad IP address '1.2.3'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), REQ_ERRORS)
def test_req_errors(text, message):
    with pytest.raises(ConfigError) as info:
        read_req(parse_conf(text, "t.cnf"))
    assert str(info.value).startswith(message)


def test_no_req_section():
    with pytest.raises(ConfigError, match=r"^t\.cnf: no \[req\] section$"):
        read_req(parse_conf("[ca]\n", "t.cnf"))


# --- extensions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "critical", "payload"),
    [
        ("basicConstraints", "critical, CA:true, pathlen:0", True, (True, 0)),
        ("basicConstraints", "CA:FALSE", False, (False, None)),
        ("keyUsage", "critical, digitalSignature, Key Encipherment", True, (0, 2)),
        ("keyUsage", "keyCertSign, cRLSign", False, (5, 6)),
        ("extendedKeyUsage", "serverAuth, clientAuth, 1.2.3.4", False,
         ("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2", "1.2.3.4")),
        ("nsCertType", "server", False, (1,)),
        ("nsCertType", "client, server, sslCA", False, (0, 1, 5)),
        ("nsComment", "made for mail", False, "made for mail"),
        ("subjectKeyIdentifier", "hash", False, "hash"),
        ("authorityKeyIdentifier", "keyid, issuer:always", False, ("", "always")),
        ("subjectAltName", "DNS:a.example, IP:::1, IP:10.0.0.1, email:x@y, URI:https://x/",
         False, (("DNS", "a.example"), ("IP", "::1"), ("IP", "10.0.0.1"), ("email", "x@y"),
                 ("URI", "https://x/"))),
    ],
)  # fmt: skip
def test_extension_values(name, value, critical, payload):
    spec = parse_extension(name, value, "f", 3)
    assert (spec.critical, spec.value) == (critical, payload)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("basicConstraints", "pathlen:1", "f:3: basicConstraints: CA:TRUE or CA:FALSE is required"),
        ("basicConstraints", "CA:FALSE, pathlen:1",
         "f:3: basicConstraints: pathlen only makes sense with CA:TRUE"),
        ("keyUsage", "signEverything", "f:3: keyUsage: unknown flag 'signEverything' (known: "
         "digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement, "
         "keyCertSign, cRLSign, encipherOnly, decipherOnly)"),
        ("keyUsage", "critical", "f:3: keyUsage: no value"),
        ("extendedKeyUsage", "mailAuth", "f:3: extendedKeyUsage: unknown purpose 'mailAuth' "
         "(known: serverAuth, clientAuth, ...)"),
        ("subjectAltName", "mail.example",
         "f:3: subjectAltName: 'mail.example' needs a type, e.g. DNS:mail.example"),
        ("subjectAltName", "dirName:dir_sect", "f:3: subjectAltName: dirName is not supported"),
        ("subjectAltName", "FTP:x", "f:3: subjectAltName: unknown name type 'FTP'"),
        ("subjectAltName", "email:copy", "f:3: subjectAltName: email:copy is not supported"),
        ("subjectAltName", "@nowhere", "f:3: subjectAltName: section 'nowhere' not found"),
        ("subjectKeyIdentifier", "1234",
         "f:3: subjectKeyIdentifier: only 'hash' or 'none' is supported"),
        ("nsComment", "caf\u00e9",
         "f:3: nsComment: the comment must be ASCII (it is an IA5String)"),
        ("basicConstraints", "CA:TRUE, pathlen:\u2460",
         "f:3: basicConstraints: unknown item 'pathlen:\u2460' (expected CA:TRUE, CA:FALSE or"
         " pathlen:N)"),
        ("extendedKeyUsage", "1.40.5", "f:3: extendedKeyUsage: bad OID '1.40.5': the second arc"
         " must be below 40 when the first is 0 or 1"),
        ("extendedKeyUsage", "1.2.\u2460", "f:3: extendedKeyUsage: unknown purpose '1.2.\u2460'"
         " (known: serverAuth, clientAuth, ...)"),
        ("extendedKeyUsage", "3.1", "f:3: extendedKeyUsage: bad OID '3.1': the first arc must be"
         " 0, 1 or 2"),
        ("extendedKeyUsage", "1.2" + ".1" * 63, "f:3: extendedKeyUsage: bad OID '1.2"
         + ".1" * 63 + "': too long (at most 63 bytes encoded)"),
        ("subjectAltName", "RID:2.340282366920938463463374607431768211376",
         "f:3: subjectAltName: RID:2.340282366920938463463374607431768211376: bad OID:"
         " an arc is too large (wrapcert takes arcs up to 2**128-1)"),
        ("subjectAltName", "email:\u00e9@example.org",
         "f:3: subjectAltName: email:\u00e9@example.org: the local part must be ASCII (an RFC 822"
         " name is an IA5String; wrapcert does not make SmtpUTF8Mailbox names)"),
        ("subjectAltName", "URI:https://b\u00fccher.example/",
         "f:3: subjectAltName: URI:https://b\u00fccher.example/: a URI must be ASCII"
         " (percent-encode it, and write the host as its xn-- A-label)"),
        ("subjectAltName", "DNS:b\u00fccher..example",
         "f:3: subjectAltName: bad DNS name 'b\u00fccher..example'"),
        ("subjectAltName", "DNS:\u00fc\u200dx.example",
         "f:3: subjectAltName: bad DNS name '\u00fc\\u200dx.example': Joiner U+200D not allowed at"
         " position 2 in '\u00fc\\u200dx'"),
        ("subjectAltName", "email:@", "f:3: subjectAltName: bad email address '@'"),
    ],
)  # fmt: skip
def test_extension_errors(name, value, message):
    with pytest.raises(ConfigError) as info:
        parse_extension(name, value, "f", 3)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("DNS:b\u00fccher.example", (("DNS", "xn--bcher-kva.example"),)),
        ("DNS:B\u00fcCHER.example", (("DNS", "xn--bcher-kva.example"),)),
        ("DNS:*.b\u00fccher.example", (("DNS", "*.xn--bcher-kva.example"),)),
        ("DNS:_dmarc.Example.org", (("DNS", "_dmarc.Example.org"),)),  # ASCII stays as written
        ("email:info@b\u00fccher.example", (("email", "info@xn--bcher-kva.example"),)),
        ("RID:1.2.03", (("RID", "1.2.3"),)),  # openssl reads 03 as 3
    ],
)
def test_san_names_are_encoded_as_ia5(text, names):
    """IDNA 2008 with the UTS #46 mapping, what browsers look up; openssl req would store the
    UTF-8 bytes as they are, a name no client matches."""
    assert parse_san(text, "f", 3) == names


def test_san_from_command_line_names_the_option():
    with pytest.raises(ConfigError) as info:
        parse_san("DNS:ok,IP:300.1.1.1", "--san", None)
    assert str(info.value) == "--san: subjectAltName: bad IP address '300.1.1.1'"


# --- key types and -subj --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("rsa:3072", KeySpec("rsa", 3072)),
        ("rsa", KeySpec("rsa", 2048)),
        ("RSA:4096", KeySpec("rsa", 4096)),
        ("ec", KeySpec("ec", curve="P-256")),
        ("ec:prime256v1", KeySpec("ec", curve="P-256")),
        ("ec:secp384r1", KeySpec("ec", curve="P-384")),
        ("ed25519", KeySpec("ed25519")),
    ],
)
def test_key_types(text, spec):
    assert parse_key_type(text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rsa:1024", "RSA keys of 1024 bits are too weak: use at least 2048 bits"),
        ("rsa:big", "bad RSA key size 'big' in 'rsa:big': expected e.g. rsa:2048"),
        ("rsa:\u2460", "bad RSA key size '\u2460' in 'rsa:\u2460': expected e.g. rsa:2048"),
        ("rsa:" + "9" * 5000, "bad RSA key size '999"),  # int() would refuse past 4300 digits
        ("rsa:99999999999999999999", "RSA keys above 16384 bits are not supported"),
        ("ec:P-192", "unknown curve 'P-192': use P-256, P-384 or P-521"),
        ("dsa:2048", "unknown key type 'dsa:2048': use rsa:BITS, ec:P-256, ec:P-384 or ed25519"),
    ],
)
def test_key_type_errors(text, message):
    with pytest.raises(TlswrapError) as info:
        parse_key_type(text)
    assert str(info.value).startswith(message)


def test_subj_parsing():
    assert parse_subj("/C=CA/O=Example/CN=mail.example.org") == [
        [("2.5.4.6", "CA")],
        [("2.5.4.10", "Example")],
        [("2.5.4.3", "mail.example.org")],
    ]
    assert parse_subj("/O=a\\/b\\+c+OU=x=y/emailAddress=m@x/") == [
        [("2.5.4.10", "a/b+c"), ("2.5.4.11", "x=y")],
        [("1.2.840.113549.1.9.1", "m@x")],
    ]
    assert parse_subj("/CN=a/O=/OU=b") == [[("2.5.4.3", "a")], [("2.5.4.11", "b")]]
    assert parse_subj("/2.5.4.3=oid") == [[("2.5.4.3", "oid")]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CN=x", "subject 'CN=x' must start with '/', e.g. /C=CA/O=Example/CN=host"),
        ("/CN", "subject '/CN': missing '=' after 'CN'"),
        ("/foo=b", "subject '/foo=b': unknown attribute 'foo'"),
        ("/CN=", "subject '/CN=' has no attributes"),
        (
            "/1.40.5=x",
            "subject '/1.40.5=x': bad OID '1.40.5': the second arc must be below 40"
            " when the first is 0 or 1",
        ),
    ],
)
def test_subj_errors(text, message):
    with pytest.raises(TlswrapError) as info:
        parse_subj(text)
    assert str(info.value) == message


def test_subj_round_trip():
    rdns = [[("2.5.4.10", "a/b+c\\"), ("2.5.4.11", "x")], [("2.5.4.3", "h")]]
    assert parse_subj(format_subj(rdns)) == rdns
