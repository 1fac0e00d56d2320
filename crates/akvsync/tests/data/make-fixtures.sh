#!/usr/bin/env bash
# Regenerates the PEM decoding fixtures with the OpenSSL CLI (not needed by the tests,
# which use the committed files). Certificates are valid for 100 years.
set -euo pipefail
cd "$(dirname "$0")"
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
ca='basicConstraints=critical,CA:TRUE'
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$w/root.key" -out "$w/root.pem" -subj "/CN=akvsync test root" -days 36500 -addext "$ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$w/int.key" -out "$w/int.csr" -subj "/CN=akvsync test intermediate" 2>/dev/null
openssl x509 -req -in "$w/int.csr" -CA "$w/root.pem" -CAkey "$w/root.key" -out "$w/int.pem" -days 36500 -extfile <(echo "$ca") 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$w/leaf.key" -out "$w/leaf.csr" -subj "/CN=www.contoso.com" 2>/dev/null
openssl x509 -req -in "$w/leaf.csr" -CA "$w/int.pem" -CAkey "$w/int.key" -out "$w/leaf.pem" -days 36500 -extfile <(echo "subjectAltName=DNS:www.contoso.com,DNS:contoso.com") 2>/dev/null
openssl ecparam -name prime256v1 -genkey -out "$w/ec.key" 2>/dev/null
openssl req -new -key "$w/ec.key" -out "$w/ec.csr" -subj "/CN=api.contoso.com" 2>/dev/null
openssl x509 -req -in "$w/ec.csr" -CA "$w/int.pem" -CAkey "$w/int.key" -out "$w/ec.pem" -days 36500 -extfile <(echo "subjectAltName=DNS:api.contoso.com") 2>/dev/null
openssl rsa -in "$w/leaf.key" -traditional -out "$w/leaf.pkcs1.key" 2>/dev/null
# Key Vault's own order: key first, then certificates (here shuffled further).
cat "$w/leaf.key" "$w/root.pem" "$w/leaf.pem" "$w/int.pem" > rsa-key-first-shuffled.pem
cat "$w/leaf.pem" "$w/int.pem" "$w/leaf.pkcs1.key" > rsa-pkcs1-key-last.pem
cat "$w/ec.key" "$w/ec.pem" "$w/int.pem" > ec-sec1-with-params.pem
cat "$w/leaf.pem" "$w/int.pem" > certificates-only.pem
cat "$w/int.key" "$w/leaf.pem" > key-matches-nothing.pem
# PKCS#12 in the forms OpenSSL writes (the Key Vault form is the recorded response).
cat "$w/int.pem" "$w/root.pem" > "$w/chain.pem"
p12() { openssl pkcs12 -export -inkey "$1" -in "$2" -certfile "$w/chain.pem" -out "$3" "${@:4}" 2>/dev/null; }
p12 "$w/leaf.key" "$w/leaf.pem" rsa-openssl3-aes-empty.p12 -passout pass:
p12 "$w/leaf.key" "$w/leaf.pem" rsa-legacy-rc2-empty.p12 -passout pass: -legacy
p12 "$w/leaf.key" "$w/leaf.pem" rsa-3des-sha1-empty.p12 -passout pass: -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1
p12 "$w/leaf.key" "$w/leaf.pem" rsa-nomac-empty.p12 -passout pass: -nomac
p12 "$w/leaf.key" "$w/leaf.pem" rsa-unencrypted-empty.p12 -passout pass: -keypbe NONE -certpbe NONE
p12 "$w/leaf.key" "$w/leaf.pem" rsa-with-password.p12 -passout pass:hunter2
p12 "$w/leaf.key" "$w/leaf.pem" rsa-2m-iterations.p12 -passout pass: -iter 2000000 -maciter
openssl pkcs8 -topk8 -nocrypt -in "$w/ec.key" -out "$w/ec.pk8"
p12 "$w/ec.pk8" "$w/ec.pem" ec-openssl3-aes-empty.p12 -passout pass:
for c in leaf ec int root; do
  openssl x509 -in "$w/$c.pem" -noout -fingerprint -sha1 | sed "s/.*=//; s/://g; s/^/$c /"
done > thumbprints.txt
