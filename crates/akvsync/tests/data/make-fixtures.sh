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
for c in leaf ec int root; do
  openssl x509 -in "$w/$c.pem" -noout -fingerprint -sha1 | sed "s/.*=//; s/://g; s/^/$c /"
done > thumbprints.txt
