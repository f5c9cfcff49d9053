#!/bin/sh
# Makes a test certificate authority and certificates for vmhop's tls:
# transport with the openssl command, into DIR (created if needed):
#
#   ca.pem                   the test CA (give it to both sides as --tls-ca)
#   dest.pem  dest.key       the destination (CN=vmhop-dest; names localhost,
#                            127.0.0.1, ::1 and NAME...)
#   src.pem   src.key        the source (CN=vmhop-src)
#   rogue.pem rogue.key      another client of the same CA (CN=vmhop-rogue),
#                            for --tls-allow refusals
#   expired.pem expired.key  CN=vmhop-src from the same CA, expired in 2020
#   other-ca.pem             a second, unrelated CA
#   other.pem other.key      CN=vmhop-src signed by that other CA
#
# Usage: make-test-ca.sh DIR [NAME...]
# For tests and trials only: the CA key lies next to the certificates. Keys
# are written mode 600 (vmhop refuses a key readable by group or others).
set -eu

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	echo "usage: $0 DIR [NAME...]   (test CA and certificates for vmhop tls:)" >&2
	exit 2
fi
dir=$1
shift
command -v openssl >/dev/null || { echo "$0: the openssl command is needed" >&2; exit 1; }
umask 077
mkdir -p "$dir"
cd "$dir"

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do
	case $n in
	*[!0-9.]*) case $n in *:*) san="$san,IP:$n" ;; *) san="$san,DNS:$n" ;; esac ;;
	*) san="$san,IP:$n" ;;
	esac
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# ca NAME CN: a self-signed CA.
ca() {
	newkey "$1.key"
	openssl req -x509 -new -key "$1.key" -subj "/O=vmhop test/CN=$2" -days 3650 \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		-out "$1.pem"
}

# leaf NAME CN CA [SAN]: a certificate for client and server use, signed by CA.
leaf() {
	newkey "$1.key"
	openssl req -new -key "$1.key" -subj "/O=vmhop test/CN=$2" -out "$1.csr"
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=serverAuth,clientAuth"
		[ -z "${4:-}" ] || echo "subjectAltName=$4"
	} >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 3650 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

ca ca "vmhop test CA"
ca other-ca "another test CA"
leaf dest vmhop-dest ca "$san"
leaf src vmhop-src ca
leaf rogue vmhop-rogue ca
leaf other vmhop-src other-ca

# An expired certificate: openssl x509 cannot backdate, openssl ca can.
newkey expired.key
openssl req -new -key expired.key -subj "/O=vmhop test/CN=vmhop-src" -out expired.csr
mkdir -p ca.db
: >ca.db/index.txt
echo 1000 >ca.db/serial
cat >ca.db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = ca.db/index.txt
new_certs_dir = ca.db
serial = ca.db/serial
default_md = sha256
policy = any
unique_subject = no
x509_extensions = leaf
[any]
commonName = supplied
organizationName = optional
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
EOF
openssl ca -batch -config ca.db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
	-startdate 20200101000000Z -enddate 20200201000000Z -notext -out expired.pem 2>/dev/null
rm -rf ca.db expired.csr
chmod 644 ./*.pem
echo "$0: test CA and certificates in $dir"
