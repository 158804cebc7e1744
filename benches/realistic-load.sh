#!/usr/bin/env bash
# The eBPF agent's cost to a broker at a realistic load (issue #19): mosquitto with a TLS listener
# on loopback, N connected TLS clients (default 10,000) each pinging once a minute and
# publishing every N/1000 s (1,000 QoS 0 publishes a second in all, 64-byte payloads, read by
# one subscriber), from benches/fleet-clients.py. Once every client is connected, the broker's
# CPU (utime + stime from /proc/PID/stat) is read over WINDOW seconds three times in the same
# run: agent off, agent on (`live --backend ebpf --pid <mosquitto>`, measured once its probes are
# attached), agent off again; and the agent's own CPU and RSS while on. Prints each window's
# broker CPU (% of a core), publishes and pings in it, broker CPU per message (publish delivered
# + ping answered: the fleet's Python clients may fall behind on a loaded machine, so the load is
# not always the same in each window), the ratios on / mean(off), and the machine's load average. Needs root, mosquitto, openssl and python3; raises the fd limit to what it needs.
#   sudo bash benches/realistic-load.sh [N] [WINDOW]        (default 10000 clients, 60 s)
# Environment: BIN=agent binary (default: cargo build --release), PUBLISHES=per second (1000),
#   RAMP=connections a second while connecting (default 250), KEEP=DIR keeps the run's files,
#   SATURATING=1 also runs the saturating publish load with and without the agent
#   (`cargo bench --bench ebpf`, EBPF_BENCH_SECS=5).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
window=${2:-60}
publishes=${PUBLISHES:-1000}
ramp=${RAMP:-250}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=./target/release/mqtt-keepalive
fi
BIN=$(realpath "$BIN")
port=18884
http_port=19886
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  dir=$(realpath "$KEEP")
else
  dir=$(mktemp -d)
fi
chmod 755 "$dir"
(
  cd "$dir"
  ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  # shellcheck disable=SC2086
  openssl req -x509 $ec -days 2 -subj "/CN=realistic-load CA" -keyout ca.key -out ca.crt 2>/dev/null
  # shellcheck disable=SC2086
  openssl req $ec -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
  chmod 644 server.key
)
# Each side holds one descriptor per client: raise the limit (root may raise the hard one too).
need=$((n + 1000))
if [ "$(ulimit -Hn)" -lt $need ]; then ulimit -Hn $need 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $need ] || { echo "fd limit $(ulimit -n) < $need: raise it (ulimit -Hn)" >&2; exit 2; }
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nmax_queued_messages 10000\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n' \
  $port "$dir" "$dir" "$dir" > "$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" > "$dir/broker.log" 2>&1 &
broker=$!
agent=
fleet=
cleanup() {
  for p in $agent $fleet $broker; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q " 0100007F:$(printf '%04X' $port) 00000000:0000 0A" /proc/net/tcp && break
  sleep 0.1
done
kill -0 $broker
period=$(awk -v n="$n" -v p="$publishes" 'BEGIN {print n / p}')
python3 benches/fleet-clients.py $port "$dir/ca.crt" "$n" "$period" "$ramp" "$dir/status.json" \
  > "$dir/fleet.out" 2> "$dir/fleet.err" &
fleet=$!
st() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$dir/status.json" "$1"; }
echo "connecting $n TLS clients at $ramp/s ..."
for _ in $(seq $((n / ramp * 4 + 120))); do
  sleep 1
  kill -0 $fleet
  [ -s "$dir/status.json" ] && [ "$(st connected)" -ge "$n" ] && break
done
[ "$(st connected)" -ge "$n" ] || { echo "only $(st connected) of $n connected" >&2; cat "$dir/fleet.err" >&2; exit 1; }
sleep 10 # the last handshakes' work is done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results=()
per_message=()
measure() { # name: one window of broker CPU, publishes, pings
  local b0 p0 q0 t0 b1 p1 q1 t1 a0 a1 load
  b0=$(ticks $broker); p0=$(st received); q0=$(st pingresp); t0=$(date +%s.%N)
  [ -n "$agent" ] && a0=$(ticks $agent)
  sleep "$window"
  b1=$(ticks $broker); p1=$(st received); q1=$(st pingresp); t1=$(date +%s.%N)
  load=$(cut -d' ' -f1 /proc/loadavg)
  local wall cpu line per
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  cpu=$(awk -v c=$((b1 - b0)) -v h="$hz" -v w="$wall" 'BEGIN {printf "%.2f", c / h * 100 / w}')
  per=$(awk -v c=$((b1 - b0)) -v h="$hz" -v p=$((p1 - p0)) -v q=$((q1 - q0)) 'BEGIN {printf "%.1f", c / h * 1e6 / (p + q)}')
  line=$(printf '%-9s broker %6s%% of a core  publishes %7.0f/s  pings answered %5.1f/s  broker %6s us/message  load %s' "$1" "$cpu" \
    "$(awk -v a="$p0" -v b="$p1" -v w="$wall" 'BEGIN {print (b - a) / w}')" \
    "$(awk -v a="$q0" -v b="$q1" -v w="$wall" 'BEGIN {print (b - a) / w}')" "$per" "$load")
  if [ -n "$agent" ]; then
    a1=$(ticks $agent)
    line+=$(printf '  agent %.2f%% of a core, RSS %s MiB' "$(awk -v c=$((a1 - a0)) -v h="$hz" -v w="$wall" 'BEGIN {print c / h * 100 / w}')" \
      "$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$agent/status)")
  fi
  echo "$line"
  results+=("$cpu")
  per_message+=("$per")
}
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(st connected) clients connected, publish period ${period} s"
measure "off"
"$BIN" live --backend ebpf --port $port --pid $broker --listen 127.0.0.1:$http_port > /dev/null 2> "$dir/agent.log" &
agent=$!
for _ in $(seq 300); do
  grep -q "eBPF probes attached" "$dir/agent.log" 2>/dev/null && break
  kill -0 $agent
  sleep 0.1
done
sleep 5 # the agent joins the open connections as they next call SSL
measure "on"
echo "agent saw: $(curl -s localhost:$http_port/metrics | awk '/^mqtt_keepalive_(ebpf_records_total|ebpf_unbound_calls_total|capture_dropped_packets_total|sessions_open) / {printf "%s ", $0}')"
kill $agent; wait $agent 2>/dev/null || true
agent=
sleep 2
measure "off"
ratio() { awk -v on="$2" -v a="$1" -v b="$3" 'BEGIN {printf "%.3f", on / ((a + b) / 2)}'; }
echo "broker CPU with the agent / without (mean of the two off windows): $(ratio "${results[@]}") (target <= 1.10)"
echo "broker CPU per message (publish received + ping answered), with / without: $(ratio "${per_message[@]}")"
echo "fleet: $(cat "$dir/status.json")"
if [ "${SATURATING:-0}" = 1 ]; then
  kill $fleet; wait $fleet 2>/dev/null || true
  fleet=
  echo "saturating publish load (cargo bench --bench ebpf):"
  EBPF_BENCH_SECS=${EBPF_BENCH_SECS:-5} cargo bench --bench ebpf
fi
