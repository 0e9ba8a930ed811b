"""Test certificates made at test time with the ``openssl`` command (no key
is committed): a lab CA, a server certificate for ``localhost`` and
``127.0.0.1``, a client certificate ``alice``, and another CA."""

import os
import shutil
import subprocess

import pytest


def _run(args, cwd):
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        if shutil.which("openssl") is None:
            pytest.fail("the openssl command is needed to make test certificates", pytrace=False)
        raise
    except subprocess.CalledProcessError as e:
        pytest.fail(f"openssl {' '.join(args)} failed: {e.stderr.decode(errors='replace')}", pytrace=False)


def _ca(d, name, cn):
    _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-addext", "subjectKeyIdentifier=hash"], d)


def _leaf(d, name, cn, ca, ext):
    with open(os.path.join(d, f"{name}.ext"), "w", encoding="ascii") as f:
        f.write(ext + "\nbasicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n"
                      "authorityKeyIdentifier=keyid\n")
    _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"], d)
    _run(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
          "-set_serial", str(abs(hash(name)) % 10**9 + 1), "-out", f"{name}.pem", "-days", "2",
          "-extfile", f"{name}.ext"], d)


class Lab:
    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        _ca(d, "ca", "framerpc test lab CA")
        _ca(d, "other_ca", "someone else's CA")
        _leaf(d, "server", "localhost", "ca",
              "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        _leaf(d, "alice", "alice", "ca", "extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)
