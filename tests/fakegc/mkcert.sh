#!/bin/sh
# mkcert.sh DIR: a throw-away CA (DIR/ca.pem) and a server certificate for 127.0.0.1
# and localhost (DIR/server.pem, DIR/server.key) for running fakegc over HTTPS.
# Same result as `python3 -m fakegc.tls DIR`; needs only the openssl CLI ($OPENSSL).
set -eu
dir=${1:?usage: mkcert.sh DIR}
openssl=${OPENSSL:-openssl}
mkdir -p "$dir"
"$openssl" req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
	-days 2 -subj "/CN=fakegc test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
"$openssl" req -newkey rsa:2048 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" \
	-subj "/CN=127.0.0.1" 2>/dev/null
printf '%s\n' 'basicConstraints=CA:FALSE' \
	'keyUsage=critical,digitalSignature,keyEncipherment' \
	'extendedKeyUsage=serverAuth' \
	'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$dir/ext.cnf"
"$openssl" x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
	-CAcreateserial -out "$dir/server.pem" -days 2 -extfile "$dir/ext.cnf" 2>/dev/null
rm -f "$dir/server.csr" "$dir/ext.cnf" "$dir/ca.srl"
echo "$dir/ca.pem"
