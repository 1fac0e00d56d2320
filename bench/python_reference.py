"""What a user would write instead of akvsync: the reference for the benchmarks (issue 9).

Reads the same settings file as `akvsync once` (the KeyVaultForLinux schema:
`secretsManagementSettings.observedCertificates` and `certificateStoreLocation`), and for
each observed certificate, in order: fetches the secret with the official Python SDK
(`azure-keyvault-secrets`, one `SecretClient` per vault, `ManagedIdentityCredential`),
decodes it with `cryptography` (PKCS#12 with the empty password, or PEM), and writes
`<store>/<vault>.<secret>` as PEM (leaf, chain, then the PKCS#8 key), mode 0600.
Sequential, as the SDK's samples are written; no fsync (which only favours this script:
akvsync fsyncs every file it installs).

Usage: python bench/python_reference.py SETTINGS.json ENDPOINTS.json
ENDPOINTS.json is the emulator's (`kvemu serve` writes it): the identity endpoint goes to
ManagedIdentityCredential through AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS), the emulator's
CA to the SDK's `connection_verify`, and `*.vault.azure.net:443` is mapped to the
emulator's address the way DNS plus a port forward would (scripts/kvemu_python_sdk.py does
the same). Prints `python-reference: N certificates in S s (after imports)`.
"""
import json
import os
import socket
import sys
import time

STARTED = time.monotonic()

with open(sys.argv[2]) as f:
    ENDPOINTS = json.load(f)
VAULT_IP, VAULT_PORT = ENDPOINTS["vault_addr"].rsplit(":", 1)
os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = ENDPOINTS["identity_endpoint"].split("/metadata/")[0]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,.vault.azure.net"
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    if isinstance(host, str) and host.lower().endswith(".vault.azure.net"):
        host, port = VAULT_IP, int(VAULT_PORT)
    return _real_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

import base64  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

from azure.identity import ManagedIdentityCredential  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402

IMPORTED = time.monotonic()


def to_pem(secret):
    """Leaf, chain and key as PEM text from a PKCS#12 or PEM secret."""
    if secret.properties.content_type == "application/x-pkcs12":
        key, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
        certificates = [leaf, *chain]
    else:
        data = secret.value.encode()
        key = serialization.load_pem_private_key(data, password=None)
        certificates = x509.load_pem_x509_certificates(data)
    if key is None or not certificates:
        raise ValueError(f"{secret.name}: no key or no certificate")
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    return text + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def main():
    with open(sys.argv[1]) as f:
        settings = json.load(f)["secretsManagementSettings"]
    store = settings["certificateStoreLocation"]
    os.makedirs(store, exist_ok=True)
    credential = ManagedIdentityCredential()
    clients = {}
    for entry in settings["observedCertificates"]:
        url = urlparse(entry if isinstance(entry, str) else entry["url"])
        vault = url.hostname.split(".")[0].lower()
        name = url.path.split("/")[2]
        if url.hostname not in clients:
            clients[url.hostname] = SecretClient(
                vault_url=f"https://{url.hostname}", credential=credential, connection_verify=ENDPOINTS["ca_file"]
            )
        pem = to_pem(clients[url.hostname].get_secret(name))
        fd = os.open(os.path.join(store, f"{vault}.{name}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    done = time.monotonic()
    print(
        f"python-reference: {len(settings['observedCertificates'])} certificates in {done - IMPORTED:.3f} s "
        f"(after imports; imports took {IMPORTED - STARTED:.3f} s)"
    )


if __name__ == "__main__":
    main()
