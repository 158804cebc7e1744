#!/usr/bin/env bash
# Churn against a real broker: starts mosquitto on loopback and the agent capturing `lo`, runs the
# client generator (benches/churn-clients.py: RATE connections a second, at most MAX at a time,
# keepalive 1-3 s, pings, DISCONNECT / FIN / RST / silent endings) for SECONDS, then compares
# what the clients did with the agent's /metrics (every connection, close, close without
# DISCONNECT and ping must be counted exactly; benches/churn-compare.py prints the table), and
# reports the agent's CPU per packet, its share of a core, and its RSS every 10 s (flat after
# warm-up). Needs root, mosquitto and python3.
#   bash benches/churn.sh [SECONDS] [RATE] [MAX]       (default 180 s, 200/s, 600)
# Environment: BIN=agent binary (default: cargo build --profile dist, the shipped profile), AGENT_ARGS=extra `live` options.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-180}
rate=${2:-200}
most=${3:-600}
if [ -z "${BIN:-}" ]; then
  cargo build --profile dist -q
  BIN=./target/dist/mqtt-keepalive
fi
broker_port=18831
http_port=19884
dir=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' $broker_port > "$dir/mosquitto.conf"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # mosquitto and the clients hold hundreds of sockets
mosquitto -c "$dir/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
# shellcheck disable=SC2086
"$BIN" live -i lo -p $broker_port --listen 127.0.0.1:$http_port ${AGENT_ARGS:-} 2>"$dir/agent.log" &
agent=$!
trap 'kill $agent $broker 2>/dev/null; wait $agent $broker 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf localhost:$http_port/healthz >/dev/null && break; sleep 0.1; done
kill -0 $agent # it started (a taken port or a bad option ends it at once)
ticks() { awk '{print $14 + $15}' /proc/$agent/stat; }
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$agent/status; }
before=$(ticks)
t0=$(date +%s.%N)
python3 benches/churn-clients.py $broker_port "$rate" "$most" "$seconds" > "$dir/counts.json" 2> "$dir/clients.err" &
clients=$!
samples=()
while kill -0 $clients 2>/dev/null; do
  sleep 10
  samples+=("$(rss)")
done
wait $clients
sleep 2 # the last closes reach the agent
after=$(ticks)
t1=$(date +%s.%N)
metrics=$(curl -s localhost:$http_port/metrics)
m() { echo "$metrics" | awk -v s="$1" '$1 == s {print $2}'; }
c() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$dir/counts.json" "$1"; }
packets=$(m mqtt_keepalive_capture_packets_total)
cpu_ms=$(( (after - before) * 1000 / $(getconf CLK_TCK) ))
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
echo "clients:         $(cat "$dir/counts.json")"
[ -s "$dir/clients.err" ] && echo "client errors:   $(sort "$dir/clients.err" | cut -d: -f2- | sort | uniq -c | head -5)"
echo "counted by the agent vs done by the clients:"
echo "$metrics" > "$dir/live.metrics"
python3 benches/churn-compare.py "$dir/counts.json" "$dir/live.metrics" || true
echo "expired:         $(echo "$metrics" | awk '$1 ~ /^mqtt_keepalive_expired_total/ {n += $2} END {print n}') (silent clients: $(c silent); mosquitto closes some before 1.5 x keepalive)"
echo "enforcement:     $(echo "$metrics" | awk '/^mqtt_keepalive_enforcement_total/ {printf "%s ", $0}')"
echo "kernel dropped:  $(m mqtt_keepalive_capture_dropped_packets_total), ring freezes: $(m mqtt_keepalive_capture_ring_freezes_total)"
echo "packets:         $packets in $wall s ($(awk -v p="$packets" -v w="$wall" 'BEGIN {printf "%.0f", p / w}')/s)"
echo "agent CPU:       $cpu_ms ms = $(awk -v c="$cpu_ms" -v n="$packets" 'BEGIN {printf "%.2f", c * 1000 / n}') us/packet, $(awk -v c="$cpu_ms" -v w="$wall" 'BEGIN {printf "%.2f", c / 10 / w}')% of a core"
echo "agent RSS (MiB, every 10 s): ${samples[*]}"
echo "agent peak RSS:  $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$agent/status)"
