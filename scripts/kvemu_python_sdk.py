"""Official Python Azure SDK flows against kvemu (run by scripts/ci-python-sdk.sh).

Routes every *.vault.azure.net host (port 443) to the emulator's ip:port by
patching socket.getaddrinfo (what DNS plus a port forward would do), so URLs, TLS
(SNI, certificate check) and the SDK's challenge verification all see real-shaped
vault URLs without a port. (The SDK's challenge check compares the URL's netloc,
port included, with the resource host: a vault URL with a non-default port fails it.) The token comes from the emulator's identity endpoint
through ManagedIdentityCredential (AZURE_POD_IDENTITY_AUTHORITY_HOST).
"""
import base64
import datetime
import json
import os
import socket
import sys

with open(sys.argv[1]) as f:
    ENDPOINTS = json.load(f)
VAULT_IP, VAULT_PORT = ENDPOINTS["vault_addr"].rsplit(":", 1)
IDENTITY_HOST = ENDPOINTS["identity_endpoint"].split("/metadata/")[0]
CA_FILE = ENDPOINTS["ca_file"]
USER_ASSIGNED = "0d2a3c41-5e6f-4a7b-8c9d-0e1f2a3b4c5d"

os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = IDENTITY_HOST
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,.vault.azure.net"

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    if isinstance(host, str) and host.lower().endswith(".vault.azure.net"):
        host, port = VAULT_IP, int(VAULT_PORT)
    return _real_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azure.identity import ManagedIdentityCredential  # noqa: E402
from azure.keyvault.certificates import (  # noqa: E402
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
)
from azure.keyvault.secrets import SecretClient  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    checks += 1
    print(f"ok   {what}")


def self_signed(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def run(vault_name, credential, label):
    url = f"https://{vault_name}.vault.azure.net"
    secrets = SecretClient(vault_url=url, credential=credential, connection_verify=CA_FILE)
    certs = CertificateClient(vault_url=url, credential=credential, connection_verify=CA_FILE)

    # Secrets: set (three versions), get latest and by version, list with paging.
    versions = []
    for i in range(3):
        s = secrets.set_secret("py-secret", f"value-{i}", content_type="text/plain", tags={"i": str(i)})
        versions.append(s.properties.version)
    check(len(set(versions)) == 3 and all(len(v) == 32 for v in versions), f"{label}: set_secret x3")
    got = secrets.get_secret("py-secret")
    check(got.value == "value-2" and got.properties.version == versions[2], f"{label}: get_secret latest")
    check(got.properties.content_type == "text/plain" and got.properties.tags == {"i": "2"}, f"{label}: properties")
    check(secrets.get_secret("py-secret", versions[0]).value == "value-0", f"{label}: get_secret by version")
    for n in ("a", "b", "c"):
        secrets.set_secret(f"py-{n}", n)
    names = sorted(p.name for p in secrets.list_properties_of_secrets())
    check({"py-secret", "py-a", "py-b", "py-c"} <= set(names), f"{label}: list_properties_of_secrets pages ({len(names)} items)")
    vers = [p.version for p in secrets.list_properties_of_secret_versions("py-secret")]
    check(sorted(vers) == sorted(versions), f"{label}: list_properties_of_secret_versions")
    try:
        secrets.get_secret("does-not-exist")
        check(False, f"{label}: missing secret raises")
    except ResourceNotFoundError as e:
        check(e.error.code == "SecretNotFound", f"{label}: missing secret -> SecretNotFound")
    poller = secrets.begin_delete_secret("py-a")
    check(poller.result().name == "py-a", f"{label}: begin_delete_secret")

    # Certificates: import PEM (bytes of the PEM text), then the managed secret.
    key, cert = self_signed(f"{vault_name}.example.test")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    policy = CertificatePolicy(content_type=CertificateContentType.pem)
    imported = certs.import_certificate("py-pem", pem, policy=policy)
    thumb = cert.fingerprint(hashes.SHA1())
    check(imported.properties.x509_thumbprint == thumb, f"{label}: import_certificate (PEM) x5t")
    managed = secrets.get_secret("py-pem")
    check(managed.properties.managed and managed.properties.content_type == "application/x-pem-file",
          f"{label}: managed secret of the PEM certificate")
    check(managed.properties.version == imported.properties.version, f"{label}: same version as the certificate")
    check(managed.value.startswith("-----BEGIN PRIVATE KEY-----"), f"{label}: key first in the PEM secret")
    check(managed.properties.key_id == imported.key_id, f"{label}: kid")
    got_cert = certs.get_certificate("py-pem")
    check(got_cert.cer == cert.public_bytes(serialization.Encoding.DER), f"{label}: get_certificate cer")
    certs.import_certificate("py-pem", pem, policy=policy)
    cv = list(certs.list_properties_of_certificate_versions("py-pem"))
    check(len(cv) == 2, f"{label}: list_properties_of_certificate_versions")

    # PFX import (OpenSSL's form from `cryptography`), served in Key Vault's form.
    pfx = pkcs12.serialize_key_and_certificates(b"py", key, cert, None, serialization.NoEncryption())
    imp = certs.import_certificate("py-pfx", pfx)
    check(imp.properties.x509_thumbprint == thumb, f"{label}: import_certificate (PFX) x5t")
    sec = secrets.get_secret("py-pfx")
    check(sec.properties.content_type == "application/x-pkcs12" and sec.properties.managed,
          f"{label}: managed secret of the PFX certificate")
    k2, c2, _ = pkcs12.load_key_and_certificates(base64.b64decode(sec.value), None)
    check(c2.fingerprint(hashes.SHA1()) == thumb and k2 is not None, f"{label}: PFX secret decodes (empty password)")


def main():
    # System-assigned identity.
    run("pyvault", ManagedIdentityCredential(), "system identity")
    # User-assigned identity selected by client id.
    run("pyvault2", ManagedIdentityCredential(client_id=USER_ASSIGNED), "user-assigned identity")
    # The seeded certificates of `kvemu serve --seed`.
    cred = ManagedIdentityCredential()
    demo = SecretClient(vault_url="https://demo.vault.azure.net", credential=cred, connection_verify=CA_FILE)
    s = demo.get_secret("seed-rsa-pem")
    check(s.properties.managed and s.value.startswith("-----BEGIN PRIVATE KEY-----"), "seeded seed-rsa-pem")
    for name in ("seed-rsa-pfx", "seed-ec-pfx"):
        s = demo.get_secret(name)
        k, c, extra = pkcs12.load_key_and_certificates(base64.b64decode(s.value), None)
        check(s.properties.content_type == "application/x-pkcs12" and k is not None and len(extra) == 2,
              f"seeded {name} (Key Vault PFX with its chain)")
    print(f"python SDK conformance: {checks} checks passed")


if __name__ == "__main__":
    main()
