#!/usr/bin/env bash
# Makes a development CA and certificates signed by it, with the openssl
# command line, for tests and for trying TLS locally. Not for production.
#
#   deploy/make-certs.sh DIR [HOST...]
#
# Writes into DIR (created if needed):
#   ca.crt ca.key            the CA (10 years)
#   server.crt server.key    subject CN=starling, SANs: localhost, 127.0.0.1,
#                            ::1 and every HOST given (names or IP addresses)
#   client.crt client.key    subject CN=client (for require_certificate and
#                            use_identity_as_username)
#   node1..3.crt/.key        peer-link certificates (CN=nodeN, SANs as the
#                            server's plus nodeN), for cluster_certfile;
#                            STARLING_CERT_NODES=N makes node1..N
# Keys are ECDSA P-256; STARLING_CERT_KEY=rsa makes RSA 2048 keys instead.
# Existing files in DIR are replaced.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
command -v openssl >/dev/null || { echo "make-certs: the openssl command is not installed (apt-get install openssl)" >&2; exit 1; }
DIR=$1
shift
mkdir -p "$DIR"
cd "$DIR"

newkey() { # FILE
    if [ "${STARLING_CERT_KEY:-ec}" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
    fi
    chmod 600 "$1"
}

sans() { # EXTRA_NAME...
    local list="DNS:localhost,IP:127.0.0.1,IP:::1" h
    for h in "$@"; do
        if [[ "$h" =~ ^[0-9.]+$ ]] || [[ "$h" == *:* ]]; then list="$list,IP:$h"; else list="$list,DNS:$h"; fi
    done
    echo "$list"
}

sign() { # NAME CN EXT
    newkey "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

newkey ca.key
openssl req -new -x509 -key ca.key -subj "/CN=Starling development CA" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt

sign server starling "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$(sans "$@")"
sign client client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
for n in $(seq 1 "${STARLING_CERT_NODES:-3}"); do
    sign "node$n" "node$n" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$(sans "node$n" "$@")"
done
rm -f ca.srl
echo "make-certs: CA, server, client and node1..${STARLING_CERT_NODES:-3} certificates in $(pwd)"
