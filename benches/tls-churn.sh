#!/usr/bin/env bash
# TLS churn against a real broker with the eBPF agent (issue #19): makes a CA and a server
# certificate (EC P-256) with openssl, starts the broker with a TLS listener on loopback
# (mosquitto, or amqtt with BROKER=amqtt), the agent `live --backend ebpf --pid <broker>`, and
# tcpdump recording the broker port; runs the client generator (benches/churn-clients.py --tls:
# RATE connections a second, at most MAX at a time, keepalive 1-3 s, PINGS pings each, endings
# DISCONNECT / close_notify + FIN / RST by abort (right after the last PINGRESP when there were
# pings) / silence until the broker closes) for SECONDS, the clients writing their TLS secrets to
# a key log. Then `analyze --tls-keylog KEYLOG -f openmetrics capture.pcap` reads the recording
# offline, and benches/churn-compare.py prints each count as clients / live agent / offline, with
# mismatches (exit status 1 when any). Also the agent's and the broker's CPU, the agent's RSS
# every 30 s, its ring-buffer records, drops, lost bytes and unbound calls, tcpdump's drops, and
# the machine's load average. Needs root, mosquitto (or amqtt), openssl, tcpdump and python3.
#   sudo bash benches/tls-churn.sh [SECONDS] [RATE] [MAX]       (default 600 s, 100/s, 1000)
# Environment: BIN=agent binary (default: cargo build --release), BROKER=mosquitto|amqtt,
#   PINGS=LO-HI (default 0-3), AGENT_ARGS=extra `live` options, KEEP=DIR (the run's files are
#   kept there: capture, key log, metrics, counts, logs), OFFLINE=0 skips the offline analysis,
#   NICE=N runs the clients under `nice -n N` (default 0: the load is what is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
rate=${2:-100}
most=${3:-1000}
broker_kind=${BROKER:-mosquitto}
pings=${PINGS:-0-3}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=./target/release/mqtt-keepalive
fi
BIN=$(realpath "$BIN")
port=18883
http_port=19885
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  dir=$(realpath "$KEEP")
else
  dir=$(mktemp -d)
fi
chmod 755 "$dir" # mosquitto started as root drops to its own user: it reads the certificates here
(
  cd "$dir"
  ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  # shellcheck disable=SC2086
  openssl req -x509 $ec -days 2 -subj "/CN=tls-churn CA" -keyout ca.key -out ca.crt 2>/dev/null
  # shellcheck disable=SC2086
  openssl req $ec -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
  chmod 644 server.key
)
rm -f "$dir/keys.log" "$dir/capture.pcap"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # the broker and the clients hold hundreds of sockets
case $broker_kind in
  mosquitto)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n' \
      $port "$dir" "$dir" "$dir" > "$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" > "$dir/broker.log" 2>&1 &
    endings=disconnect,fin,rst,silent
    ;;
  amqtt)
    bash benches/amqtt-tls.sh $port "$dir" > "$dir/broker.log" 2>&1 &
    endings=disconnect,fin,rst # amqtt never closes a silent client
    ;;
  *) echo "BROKER: mosquitto or amqtt, not $broker_kind" >&2; exit 2 ;;
esac
broker=$!
agent=
tcpdump_pid=
cleanup() {
  for p in $agent $tcpdump_pid $broker; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q " 0100007F:$(printf '%04X' $port) 00000000:0000 0A" /proc/net/tcp && break
  sleep 0.1
done
kill -0 $broker # it started
tcpdump -i lo -U -B 262144 -w "$dir/capture.pcap" "tcp port $port" 2> "$dir/tcpdump.log" &
tcpdump_pid=$!
# shellcheck disable=SC2086
"$BIN" live --backend ebpf --port $port --pid $broker --listen 127.0.0.1:$http_port ${AGENT_ARGS:-} \
  > /dev/null 2> "$dir/agent.log" &
agent=$!
for _ in $(seq 200); do
  grep -q "eBPF probes attached" "$dir/agent.log" 2>/dev/null && curl -sf localhost:$http_port/healthz > /dev/null && break
  kill -0 $agent # a bad option or a failed attach ends it at once
  sleep 0.1
done
for _ in $(seq 100); do grep -q "listening on" "$dir/tcpdump.log" && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$agent/status; }
agent0=$(ticks $agent)
broker0=$(ticks $broker)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
nice -n "${NICE:-0}" python3 benches/churn-clients.py $port "$rate" "$most" "$seconds" --tls "$dir/ca.crt" \
  --keylog "$dir/keys.log" --pings "$pings" --endings $endings > "$dir/counts.json" 2> "$dir/clients.err" &
clients=$!
samples=()
loads=()
while kill -0 $clients 2>/dev/null; do
  for _ in $(seq 30); do kill -0 $clients 2>/dev/null && sleep 1; done
  samples+=("$(rss)")
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
done
wait $clients
sleep 3 # the last closes reach the agent (it holds records for its reorder window)
agent1=$(ticks $agent)
broker1=$(ticks $broker)
t1=$(date +%s.%N)
curl -s localhost:$http_port/metrics > "$dir/live.metrics"
kill -INT $tcpdump_pid
wait $tcpdump_pid 2>/dev/null || true
tcpdump_pid=
m() { awk -v s="$1" '$1 == s {print $2}' "$dir/live.metrics"; }
hz=$(getconf CLK_TCK)
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
echo "broker:          $broker_kind (pid $broker), port $port, $seconds s at $rate connections/s (at most $most open), pings $pings"
echo "clients:         $(cat "$dir/counts.json")"
if [ -s "$dir/clients.err" ]; then
  echo "client errors:"
  cut -d: -f2- "$dir/clients.err" | sort | uniq -c | sort -rn | head -5
fi
echo "ring records:    $(m mqtt_keepalive_ebpf_records_total), dropped $(m mqtt_keepalive_capture_dropped_packets_total), lost bytes $(m mqtt_keepalive_ebpf_lost_bytes_total), unbound calls $(m mqtt_keepalive_ebpf_unbound_calls_total)"
echo "expired:         $(awk '$1 ~ /^mqtt_keepalive_expired_total/ {n += $2} END {print n}' "$dir/live.metrics") (silent clients: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["silent"])' "$dir/counts.json"); $broker_kind may close some before 1.5 x keepalive)"
echo "agent CPU:       $(( (agent1 - agent0) * 1000 / hz )) ms in $wall s = $(awk -v c=$((agent1 - agent0)) -v h="$hz" -v w="$wall" 'BEGIN {printf "%.2f", c / h * 100 / w}')% of a core"
echo "broker CPU:      $(( (broker1 - broker0) * 1000 / hz )) ms = $(awk -v c=$((broker1 - broker0)) -v h="$hz" -v w="$wall" 'BEGIN {printf "%.2f", c / h * 100 / w}')% of a core"
echo "agent RSS (MiB, every 30 s): ${samples[*]}; peak $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$agent/status)"
echo "machine:         $(nproc) CPUs; load average at the start $load0, every 30 s: ${loads[*]}"
echo "tcpdump:         $(grep -E 'captured|dropped by kernel' "$dir/tcpdump.log" | tr '\n' ' ')"
if [ "${OFFLINE:-1}" != 0 ]; then
  a0=$(date +%s)
  "$BIN" analyze --tls-keylog "$dir/keys.log" --port $port -f openmetrics --step 1h "$dir/capture.pcap" \
    > "$dir/offline.openmetrics" 2> "$dir/analyze.log"
  echo "offline:         analyze --tls-keylog of $(du -m "$dir/capture.pcap" | cut -f1) MiB in $(( $(date +%s) - a0 )) s"
  echo
  python3 benches/churn-compare.py "$dir/counts.json" "$dir/live.metrics" "$dir/offline.openmetrics"
else
  echo
  python3 benches/churn-compare.py "$dir/counts.json" "$dir/live.metrics"
fi
