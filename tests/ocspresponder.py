"""An OCSP responder on loopback for the tests: ``openssl ocsp`` answers each request (its
offline mode, -reqin/-respout, with the CA's index file), behind a minimal HTTP server bound to
127.0.0.1 (``openssl ocsp -port`` would listen on every address)."""

from __future__ import annotations

import datetime
import socket
import subprocess
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID


class CAFiles:
    """A trustme CA as files: its certificate, its key and an OpenSSL index of what it
    issued."""

    def __init__(self, tmp: Path):
        self.ca = trustme.CA()
        self.tmp = tmp
        self.cert = tmp / "ocsp-ca.pem"
        self.key = tmp / "ocsp-ca.key"
        self.index = tmp / "index.txt"
        self.ca.cert_pem.write_to_path(str(self.cert))
        self.ca.private_key_pem.write_to_path(str(self.key))
        self.index.write_text("")
        self.x509 = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())

    def issue(self, name: str, ocsp_url: str | None) -> tuple[Path, Path, x509.Certificate]:
        """A server certificate for ``name`` (with an AIA OCSP address when given): its
        file (leaf then the CA), its key file; recorded as valid in the index."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.x509.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False))
        if ocsp_url:
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(ocsp_url))]), False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        cert_file, key_file = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                              + self.ca.cert_pem.bytes())
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        with self.index.open("a") as f:
            f.write(f"V\t{expiry}\t\t{cert.serial_number:X}\tunknown\t/CN={name}\n")
        return cert_file, key_file, cert

    def revoke(self, cert: x509.Certificate) -> None:
        """Mark ``cert`` revoked (now, keyCompromise) in the index the responder reads."""
        serial = f"{cert.serial_number:X}"
        when = datetime.datetime.now(datetime.UTC).strftime("%y%m%d%H%M%SZ")
        lines = []
        for line in self.index.read_text().splitlines():
            fields = line.split("\t")
            if fields[3] == serial:
                fields[0], fields[2] = "R", f"{when},keyCompromise"
            lines.append("\t".join(fields))
        self.index.write_text("".join(f"{line}\n" for line in lines))

    def responder(self, minutes: int = 5):  # type: ignore[no-untyped-def]
        """A ThreadServer handler: one HTTP POST of a DER request, answered by openssl."""
        count = [0]

        def handle(conn: socket.socket) -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                body += chunk
            count[0] += 1
            req, resp = self.tmp / f"req{count[0]}.der", self.tmp / f"resp{count[0]}.der"
            req.write_bytes(body)
            subprocess.run(["openssl", "ocsp", "-index", str(self.index), "-CA",
                            str(self.cert), "-rsigner", str(self.cert), "-rkey", str(self.key),
                            "-reqin", str(req), "-respout", str(resp), "-nmin", str(minutes)],
                           capture_output=True, timeout=20, check=True)
            answer = resp.read_bytes()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n"
                         + f"Content-Length: {len(answer)}\r\n\r\n".encode() + answer)

        handle.count = count  # type: ignore[attr-defined]
        return handle
