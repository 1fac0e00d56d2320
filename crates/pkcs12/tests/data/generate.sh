#!/bin/sh
# Regenerates the PKCS#12 fixtures of this directory with the OpenSSL 3 CLI.
# The outputs are committed: the tests never run this script (nor need openssl).
# Run from this directory: `sh generate.sh` (writes *.pem and *.pfx).
set -eu
DAYS=36500

chain() { # $1 = prefix, $2.. = key generation arguments
  p=$1; shift
  for n in root int leaf; do openssl genpkey "$@" -out "$p-$n.key" 2>/dev/null; done
  openssl req -x509 -new -key "$p-root.key" -subj "/CN=akvsync test $p root" -days $DAYS \
    -addext basicConstraints=critical,CA:TRUE -out "$p-root.pem"
  openssl req -new -key "$p-int.key" -subj "/CN=akvsync test $p intermediate" -out "$p-int.csr"
  openssl x509 -req -in "$p-int.csr" -CA "$p-root.pem" -CAkey "$p-root.key" -days $DAYS \
    -set_serial 2 -extfile /dev/stdin -out "$p-int.pem" 2>/dev/null <<X
basicConstraints=critical,CA:TRUE
X
  openssl req -new -key "$p-leaf.key" -subj "/CN=$p.akvsync.test" -out "$p-leaf.csr"
  openssl x509 -req -in "$p-leaf.csr" -CA "$p-int.pem" -CAkey "$p-int.key" -days $DAYS \
    -set_serial 3 -extfile /dev/stdin -out "$p-leaf.pem" 2>/dev/null <<X
subjectAltName=DNS:$p.akvsync.test
X
  cat "$p-int.pem" "$p-root.pem" > "$p-cas.pem"
  # The leaf's key as PKCS#8 (what the decoder returns), the CA keys are not needed.
  openssl pkcs8 -topk8 -nocrypt -in "$p-leaf.key" -out "$p-leaf.p8.pem"
  rm -f "$p-int.csr" "$p-leaf.csr" "$p-root.key" "$p-int.key" "$p-leaf.key"
}

export_pfx() { # $1 = prefix, $2 = output name, $3.. = extra pkcs12 arguments
  p=$1; out=$2; shift 2
  openssl pkcs12 -export -in "$p-leaf.pem" -inkey "$p-leaf.p8.pem" -certfile "$p-cas.pem" \
    -name "$p leaf" -out "$out" "$@"
}

chain rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
chain ec -algorithm EC -pkeyopt ec_paramgen_curve:P-256

for p in rsa ec; do
  # OpenSSL 3 default: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), SHA-256 MAC.
  export_pfx $p $p-modern.pfx -passout pass:
  # OpenSSL 1.x default: RC2-40 certificates, 3DES key, SHA-1 MAC.
  export_pfx $p $p-legacy.pfx -legacy -passout pass:
  # 3DES for both (what Key Vault uses), OpenSSL's default MAC (SHA-256).
  export_pfx $p $p-3des.pfx -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -passout pass:
  # No MAC: the decoder must find the empty password's encoding by decrypting.
  export_pfx $p $p-nomac.pfx -nomac -passout pass:
  export_pfx $p $p-nomac-3des.pfx -nomac -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -passout pass:
  # A non-empty, non-ASCII password (the tests use "Pässwörd-1").
  export_pfx $p $p-password.pfx -passout 'pass:Pässwörd-1'
  export_pfx $p $p-password-legacy.pfx -legacy -passout 'pass:Pässwörd-1'
  # No encryption at all (plain keyBag, certificates in `data`), SHA-256 MAC.
  export_pfx $p $p-unencrypted.pfx -keypbe NONE -certpbe NONE -passout pass:
done

# Other algorithm combinations (RSA chain only).
export_pfx rsa rsa-aes128-des3-sha512.pfx -keypbe aes-128-cbc -certpbe des-ede3-cbc -macalg sha512 -passout pass:
export_pfx rsa rsa-aes192-2des-sha384.pfx -keypbe aes-192-cbc -certpbe PBE-SHA1-2DES -macalg sha384 -passout pass:
export_pfx rsa rsa-rc2-128-sha1.pfx -legacy -keypbe PBE-SHA1-RC2-128 -certpbe PBE-SHA1-RC2-128 -macalg sha1 -passout pass:
export_pfx rsa rsa-iter-2000000.pfx -iter 2000000 -passout pass:
