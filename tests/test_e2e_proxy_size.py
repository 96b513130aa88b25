"""Without client certificates or ALPN, the largest PROXY v2 header tlswrap sends fits postfix's
536-byte limit (with them, ``tlswrap check`` warns: tests/test_proxy_tlvs.py).

What can grow: the addresses (IPv6 is the largest family tlswrap sends, 36 bytes), the
PP2_TYPE_SSL TLV's version ("TLSv1.3", 7) and cipher name (the longest in OpenSSL's whole list is
30: ECDHE-ECDSA-ARIA256-GCM-SHA384) and the client's SNI name as PP2_TYPE_AUTHORITY (OpenSSL
refuses one over 255 bytes, TLSEXT_MAXLEN_host_name). ALPN is sent only when the server
negotiated a protocol, which it does not. 16 + 36 + (3 + 5 + 10 + 33) + (3 + 255) = 361 bytes,
plus the server certificate's signature and key algorithms (PP2_SUBTYPE_SSL_SIG_ALG and
_KEY_ALG, as haproxy sends them).
``proxyproto.largest_v2`` computes the same figure; a new TLV shows here first, by its size.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from conftest import free_port, wait_for
from tlswrap import proxyproto

LONGEST_CIPHER = "ECDHE-ECDSA-ARIA256-GCM-SHA384"
LONGEST_SNI = ".".join(["a" * 63] * 3 + ["b" * 63])  # 255 bytes


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_the_largest_v2_header_fits_postfix(certs, thread_server, tlswrap):
    assert len(LONGEST_SNI) == 255
    sizes: list[tuple[proxyproto.ProxyHeader, int]] = []

    def backend(conn: socket.socket) -> None:
        data = b""
        while (got := proxyproto.decode(data)) is None:
            chunk = conn.recv(1)
            if not chunk:
                return
            data += chunk
        sizes.append((got[0], len(data)))
        conn.sendall(b"* OK\r\n")

    srv = thread_server(backend, host="::1")
    port = free_port("::1")
    tlswrap(f"foreground = yes\ndebug = info\n[imaps]\naccept = [::1]:{port}\n"
            f"connect = [::1]:{srv.port}\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
            f"proxyProtocol = v2\nsslVersionMax = TLSv1.2\nciphers = {LONGEST_CIPHER}\n")
    wait_for(lambda: _open(port), 15, "tlswrap on ::1")
    out = subprocess.run(["openssl", "s_client", "-connect", f"[::1]:{port}", "-tls1_2",
                          "-cipher", LONGEST_CIPHER, "-servername", LONGEST_SNI, "-quiet"],
                         input=b"", capture_output=True, timeout=30)
    assert b"* OK" in out.stdout, out.stderr
    [(header, size)] = [(h, n) for h, n in sizes if h.tlv(proxyproto.PP2_TYPE_AUTHORITY)]
    assert header.tlv(proxyproto.PP2_TYPE_AUTHORITY) == LONGEST_SNI.encode()
    info = header.ssl()
    assert info is not None and info.cipher == LONGEST_CIPHER
    assert info.sig_alg == "ecdsa-with-SHA256" and info.key_alg == "EC256"
    # 361 plus the server certificate's algorithms (17 + 5 and their heads), under the bound
    # check computes with the longest algorithm names
    assert size == 389 <= proxyproto.largest_v2(True, False, True, 0)
    assert proxyproto.largest_v2(True, False, True, 0) <= proxyproto.POSTFIX_MAX_HEADER


def _open(port: int) -> bool:
    with socket.socket(socket.AF_INET6) as s:
        s.settimeout(0.5)
        return s.connect_ex(("::1", port)) == 0
