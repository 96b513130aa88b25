"""``tlswrap check`` on the issue-12 options: every certificate of a service (a second
``cert``, an ``sni`` section's) is checked for expiry at its own line."""

from __future__ import annotations

import datetime
import io
import os

import trustme

from tlswrap import check


def test_an_expired_second_certificate_and_sni_section_certificate_are_reported(certs,
                                                                                tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    old = trustme.CA().issue_cert("old.example.org",
                                  not_before=now - datetime.timedelta(days=30),
                                  not_after=now - datetime.timedelta(days=1))
    old.cert_chain_pems[0].write_to_path(str(tmp_path / "old.pem"))
    old.private_key_pem.write_to_path(str(tmp_path / "old.key"))
    os.chmod(tmp_path / "old.key", 0o600)
    (tmp_path / "t.conf").write_text(
        f"libwrap = no\n[imaps]\naccept = 9993\nconnect = 143\ncert = {certs.cert_file}\n"
        f"key = {certs.key_file}\ncert = {tmp_path}/old.pem\nkey = {tmp_path}/old.key\n"
        f"[v]\nsni = imaps:old.example.org\nconnect = 1143\ncert = {tmp_path}/old.pem\n"
        f"key = {tmp_path}/old.key\n")
    out = io.StringIO()
    assert check.run([str(tmp_path / "t.conf")], out, io.StringIO()) == 1
    lines = out.getvalue().splitlines()
    expired = [line for line in lines if "expired on" in line]
    assert expired[0].startswith(f"{tmp_path}/t.conf:7: error: [imaps] cert = {tmp_path}/old.pem")
    assert expired[1].startswith(f"{tmp_path}/t.conf:12: error: [v] cert = {tmp_path}/old.pem")
