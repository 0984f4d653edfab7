"""Throw-away TLS material for tests: a CA and a server certificate for 127.0.0.1.

Uses the openssl command line tool (Debian's /usr/bin/openssl, or $OPENSSL).
`python3 -m fakegc.tls DIR` writes DIR/ca.pem, DIR/ca.key, DIR/server.pem and
DIR/server.key and prints the CA path; the certificate has subjectAltName
IP:127.0.0.1 and DNS:localhost, so `curl --cacert DIR/ca.pem https://127.0.0.1:PORT/`
verifies.  tests/fakegc/mkcert.sh does the same from a shell.
"""

import os
import subprocess
import sys


def make_certs(directory, openssl=None, days=2):
    """Create the files in directory; returns (ca, cert, key) paths."""
    openssl = openssl or os.environ.get("OPENSSL") or "openssl"
    os.makedirs(directory, exist_ok=True)
    p = {n: os.path.join(directory, n) for n in
         ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "ext.cnf")}

    def run(*args):
        subprocess.run([openssl, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca.key"],
        "-out", p["ca.pem"], "-days", str(days), "-subj", "/CN=fakegc test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p["server.key"],
        "-out", p["server.csr"], "-subj", "/CN=127.0.0.1")
    with open(p["ext.cnf"], "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", p["server.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
        "-CAcreateserial", "-out", p["server.pem"], "-days", str(days),
        "-extfile", p["ext.cnf"])
    for n in ("server.csr", "ext.cnf"):
        os.unlink(p[n])
    serial = os.path.join(directory, "ca.srl")
    if os.path.exists(serial):
        os.unlink(serial)
    return p["ca.pem"], p["server.pem"], p["server.key"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m fakegc.tls DIR", file=sys.stderr)
        return 2
    ca, _cert, _key = make_certs(argv[0])
    print(ca)
    return 0


if __name__ == "__main__":
    sys.exit(main())
