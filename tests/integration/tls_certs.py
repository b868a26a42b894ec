"""tls_certs.py - certificates made by the tests with the openssl command:
a CA, a server certificate for 127.0.0.1 signed by it, a client certificate
signed by it, and a second CA with its own client certificate (one the
server does not trust). Keys are owner-only, as Veil requires of its own."""
import os
import subprocess
from dataclasses import dataclass


@dataclass
class TlsFiles:
    ca: str           # the CA that signed server and client
    other_ca: str     # a CA nobody here trusts
    server_cert: str
    server_key: str
    client_cert: str  # signed by ca
    client_key: str
    rogue_cert: str   # signed by other_ca
    rogue_key: str


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ca(d, name, cn):
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
         "-subj", f"/CN={cn}", cwd=d)


def _leaf(d, name, cn, ca, ext=None):
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
            f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2"]
    if ext:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        args += ["-extfile", f"{name}.ext"]
    _run(*args, cwd=d)


def make_certs(d):
    """Writes the files into folder d (created) and names them."""
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca", "Veil test CA")
    _ca(d, "other-ca", "Someone else's CA")
    _leaf(d, "server", "127.0.0.1", "ca",
          "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "veil-worker", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(d, "rogue", "veil-worker", "other-ca", "extendedKeyUsage=clientAuth\n")
    for name in os.listdir(d):
        if name.endswith(".key"):
            os.chmod(os.path.join(d, name), 0o600)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return TlsFiles(ca=p("ca.pem"), other_ca=p("other-ca.pem"),
                    server_cert=p("server.pem"), server_key=p("server.key"),
                    client_cert=p("client.pem"), client_key=p("client.key"),
                    rogue_cert=p("rogue.pem"), rogue_key=p("rogue.key"))
