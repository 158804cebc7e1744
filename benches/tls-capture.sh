#!/usr/bin/env bash
# Makes the TLS benchmark capture (BENCHMARKS.md, "TLS and WebSocket"): a real mosquitto with a TLS
# listener on loopback (a CA and a server certificate made here with openssl, as in
# fixtures/record.sh), captured by tcpdump, and one client connection per suite publishing QoS 0
# messages as fast as it can, with a PINGREQ every 1,000 messages, then DISCONNECT (mosquitto
# closes):
#   TLS 1.3 TLS_AES_128_GCM_SHA256, TLS 1.3 TLS_CHACHA20_POLY1305_SHA256,
#   TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256.
# The clients write their secrets to the key log (SSLKEYLOGFILE format) beside the capture.
#
# Needs root (or CAP_NET_RAW) and: mosquitto tcpdump openssl python3.
# Usage: sudo bash benches/tls-capture.sh [OUT.pcap]   (default /tmp/tls-bench.pcap; key log OUT.keys)
#   PORT=8883 (the listener)  MESSAGES=25000 (per connection; payloads 16..1000 bytes: ~13 MB each)
# The capture is large: keep it under /tmp, never commit it.
set -euo pipefail

out=${1:-/tmp/tls-bench.pcap}
keys=${out%.pcap}.keys
port=${PORT:-8883}
messages=${MESSAGES:-25000}
work=$(mktemp -d)
broker_pid=
capture_pid=
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  [ -n "$capture_pid" ] && kill "$capture_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null; then
  echo "port $port is taken: choose another with PORT=" >&2
  exit 1
fi

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mqtt-keepalive bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null
chmod 755 "$work" # mosquitto drops to its own user: it must read the certificates and key
chmod 644 "$work"/*.key

# start_broker TLS13-CIPHERSUITE: the TLS listener, its TLS 1.3 suite chosen by the broker.
start_broker() {
  stop_broker
  printf 'listener %s 127.0.0.1\nallow_anonymous true\ncafile %s\ncertfile %s\nkeyfile %s\nciphers_tls1.3 %s\n' \
    "$port" "$work/ca.crt" "$work/server.crt" "$work/server.key" "$1" >"$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && return
    sleep 0.1
  done
  echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1
}

stop_broker() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; broker_pid=; fi
}

# publisher CLIENT-ID [TLS-MAX [TLS12-CIPHERS]]
publisher() {
  python3 - "$port" "$work/ca.crt" "$keys" "$messages" "$@" <<'EOF'
import socket, ssl, struct, sys
port, ca, keylog, messages, client_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
tls_max = sys.argv[6] if len(sys.argv) > 6 else None
ciphers = sys.argv[7] if len(sys.argv) > 7 else None

def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def string(b):
    return struct.pack("!H", len(b)) + b

def packet(first, body):
    return bytes([first]) + varint(len(body)) + body

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.keylog_filename = keylog
if tls_max == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
if ciphers:
    ctx.set_ciphers(ciphers)
ctx.set_alpn_protocols(["mqtt"])
raw = socket.create_connection(("127.0.0.1", port))
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(packet(0x10, string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + string(client_id.encode())))
s.recv(4)  # CONNACK
topic = string(b"bench/" + client_id.encode())
x, pings = 12345, 0
for i in range(messages):
    x = (x * 1103515245 + 12345) % 2**31  # payload sizes 16..1000 bytes, the same every run
    s.sendall(packet(0x30, topic + bytes([48 + i % 10]) * (16 + x % 985)))
    if i % 1000 == 999:
        s.sendall(b"\xc0\x00")  # PINGREQ
        pings += 1
# Read every PINGRESP (nothing else comes back) before closing: closing a socket with unread
# data sends an RST, and the kernel drops what it had not sent yet.
got = b""
while got.count(b"\xd0\x00") < pings:
    got += s.recv(65536)
s.sendall(b"\xe0\x00")  # DISCONNECT: mosquitto closes the connection
try:
    while s.recv(65536):
        pass
except (ssl.SSLError, OSError):
    pass
s.close()
EOF
}

rm -f "$out" "$keys"
tcpdump -i lo -s 0 -B 262144 -U -w "$out" "tcp port $port" 2>"$work/tcpdump.log" &
capture_pid=$!
sleep 1.5 # let the capture open before traffic starts

start_broker TLS_AES_128_GCM_SHA256
publisher bench-tls13-aes128gcm
start_broker TLS_CHACHA20_POLY1305_SHA256
publisher bench-tls13-chacha20
publisher bench-tls12-aes128gcm 1.2 ECDHE-RSA-AES128-GCM-SHA256
stop_broker

sleep 1
kill -INT "$capture_pid"; wait "$capture_pid" 2>/dev/null || true
capture_pid=
grep -E 'captured|dropped' "$work/tcpdump.log" || true
echo "wrote $out ($(du -h "$out" | cut -f1)) and $keys ($(grep -vc '^#' "$keys") secrets)"
