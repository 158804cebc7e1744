#!/usr/bin/env bash
# Live capture throughput: replays the throughput benchmark's capture onto loopback at full speed
# (tcpreplay --topspeed) while the agent captures `lo`, then reports packets sent vs seen, kernel
# drops and the agent's CPU time. Needs root and tcpreplay; run `cargo bench --bench throughput`
# first (it writes the capture).
#   bash benches/live-replay.sh [PCAP] [MBPS]     (MBPS: replay rate cap; default top speed)
# For scale: bash benches/live-replay.sh target/bench-data/open-1000000.pcap (written by
# `cargo bench --bench scale`).
set -euo pipefail
cd "$(dirname "$0")/.."
pcap=${1:-target/bench-data/workload-2000x10min.pcap}
rate=${2:-}
cargo build --release -q
port=19883
./target/release/mqtt-keepalive live -i lo --listen 127.0.0.1:$port 2>/dev/null &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' /proc/$agent/stat; }
before=$(ticks)
if [ -n "$rate" ]; then speed=(--mbps "$rate"); else speed=(--topspeed); fi
replay=$(tcpreplay "${speed[@]}" -i lo "$pcap" 2>&1)
sleep 2 # let the agent drain its socket
after=$(ticks)
metrics=$(curl -s localhost:$port/metrics)
m() { echo "$metrics" | awk -v s="$1" '$1 == s {print $2}'; }
sent=$(echo "$replay" | awk '/Successful packets:/ {print $3}')
echo "$replay" | grep -E "Actual:|Rated:"
echo "sent:            $sent packets"
echo "agent saw:       $(m mqtt_keepalive_capture_packets_total) packets"
echo "kernel dropped:  $(m mqtt_keepalive_capture_dropped_packets_total) packets"
echo "agent CPU:       $(( (after - before) * 1000 / $(getconf CLK_TCK) )) ms"
echo "sessions open:   $(m mqtt_keepalive_sessions_open)"
echo "agent peak RSS:  $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$agent/status)"
start=$(date +%s.%N)
size=$(curl -s localhost:$port/sessions | wc -c)
echo "/sessions:       $size bytes in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}') s"
