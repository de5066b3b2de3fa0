#!/usr/bin/env bash
# Makes a small cluster's TLS files with the system's openssl: a CA, then one certificate per host,
# signed by that CA, carrying the host's name and addresses (what clients check the host URL
# against, and what --tls-allow matches).
#
#   scripts/make-certs.sh DIR NAME=ADDR[,ADDR...] [NAME=ADDR...]
#   scripts/make-certs.sh certs a=10.0.0.1 b=10.0.0.2,b.example.net
#
# DIR/ca.pem (give it to clients and hosts as --tls-ca), DIR/ca-key.pem (keep it offline), and
# for each host DIR/NAME.pem and DIR/NAME-key.pem (its --tls-cert and --tls-key). An existing CA
# in DIR is reused, so hosts can be added later. Keys are written readable by their owner only.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed" >&2; exit 1; }
dir=$1
shift
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=ferry cluster CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/ca.pem"
  echo "make-certs: CA $dir/ca.pem"
fi
for spec in "$@"; do
  name=${spec%%=*}
  addrs=${spec#*=}
  if [ -z "$name" ] || [ "$name" = "$spec" ] || [ -z "$addrs" ]; then
    echo "make-certs: expected NAME=ADDR[,ADDR...], got '$spec'" >&2
    exit 2
  fi
  san="DNS:$name"
  IFS=',' read -r -a list <<<"$addrs"
  for a in "${list[@]}"; do
    if [[ "$a" =~ ^[0-9.]+$ || "$a" == *:* ]]; then san="$san,IP:$a"; else san="$san,DNS:$a"; fi
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial -days 825 \
    -out "$dir/$name.pem" -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' "$san") 2>/dev/null
  rm -f "$dir/$name.csr"
  chmod 644 "$dir/$name.pem"
  echo "make-certs: $name $dir/$name.pem ($san)"
done
