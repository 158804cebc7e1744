#!/usr/bin/env bash
# Live capture throughput: replays the throughput benchmark's capture onto loopback at full speed
# (tcpreplay --topspeed) while the agent captures `lo`, then reports packets sent vs seen, kernel
# drops and ring freezes, the agent's CPU time per packet (from /proc), its peak RSS, the time
# from a silent probe client's deadline to its expiry appearing in /metrics (measured during the
# replay), and the CPU per packet of `analyze` reading the same capture from the file. Needs
# root, tcpreplay and python3; run `cargo bench --bench throughput` first (it writes the capture).
#   bash benches/live-replay.sh [PCAP] [MBPS]     (MBPS: replay rate cap; default top speed)
# For scale: bash benches/live-replay.sh target/bench-data/open-1000000.pcap (written by
# `cargo bench --bench scale`).
# Environment: BIN=path of the agent binary (default: cargo build --profile dist, the shipped profile), AGENT_ARGS=extra
# `live` options (e.g. "--ring-size 0" for the recvmsg socket, "--backend libpcap"),
# NO_PROBE=1 to skip the deadline probe.
set -euo pipefail
cd "$(dirname "$0")/.."
pcap=${1:-target/bench-data/workload-2000x10min.pcap}
rate=${2:-}
if [ -z "${BIN:-}" ]; then
  cargo build --profile dist -q
  BIN=./target/dist/mqtt-keepalive
fi
port=19883
probe_port=18830
ports=(-p 1883)
[ -n "${NO_PROBE:-}" ] || ports+=(-p "$probe_port" --client-id-labels 10)
# shellcheck disable=SC2086
"$BIN" live -i lo "${ports[@]}" --listen 127.0.0.1:$port ${AGENT_ARGS:-} 2>/dev/null &
agent=$!
# On exit the agent is stopped and waited for (the next run binds the same port).
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
kill -0 $agent # it started (a taken port or a bad option ends it at once)
ticks() { awk '{print $14 + $15}' /proc/$agent/stat; }
before=$(ticks)
if [ -n "$rate" ]; then speed=(--mbps "$rate"); else speed=(--topspeed); fi
if [ -z "${NO_PROBE:-}" ]; then
  # A client that connects with keepalive 1 and falls silent, while the replay runs: its
  # deadline is 1.5 s after its CONNECT; the probe polls /metrics every 5 ms for its expiry.
  python3 - "$probe_port" "$port" > /tmp/live-replay-probe.$$ 2>&1 <<'EOF' &
import socket, sys, threading, time, urllib.request
probe_port, http_port = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", probe_port)); srv.listen(1)
def broker():
    c, _ = srv.accept(); c.recv(100); c.sendall(b"\x20\x02\x00\x00"); time.sleep(30)
threading.Thread(target=broker, daemon=True).start()
time.sleep(0.3)  # into the replay
cid = b"latency-probe"
body = b"\x00\x04MQTT\x04\x02\x00\x01" + len(cid).to_bytes(2, "big") + cid
cli = socket.create_connection(("127.0.0.1", probe_port))
cli.sendall(bytes([0x10, len(body)]) + body)
deadline = time.time() + 1.5
cli.recv(4)
want = 'mqtt_keepalive_client_expired_total{client_id="latency-probe"} 1'
while time.time() < deadline + 10:
    m = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics").read().decode()
    if want in m:
        print(f"{time.time() - deadline:.3f}")
        break
    time.sleep(0.005)
else:
    print("not seen within 10 s")
EOF
  probe=$!
fi
replay=$(tcpreplay "${speed[@]}" -i lo "$pcap" 2>&1)
[ -z "${NO_PROBE:-}" ] && wait $probe
sleep 2 # let the agent drain its socket
after=$(ticks)
metrics=$(curl -s localhost:$port/metrics)
m() { echo "$metrics" | awk -v s="$1" '$1 == s {print $2}'; }
sent=$(echo "$replay" | awk '/Successful packets:/ {print $3}')
seen=$(m mqtt_keepalive_capture_packets_total)
cpu_ms=$(( (after - before) * 1000 / $(getconf CLK_TCK) ))
echo "$replay" | grep -E "Actual:|Rated:"
echo "sent:            $sent packets"
echo "agent saw:       $seen packets"
echo "kernel dropped:  $(m mqtt_keepalive_capture_dropped_packets_total) packets, ring freezes: $(m mqtt_keepalive_capture_ring_freezes_total)"
echo "agent CPU:       $cpu_ms ms = $(awk -v c="$cpu_ms" -v n="$seen" 'BEGIN {printf "%.3f", c * 1000 / n}') us/packet"
echo "sessions open:   $(m mqtt_keepalive_sessions_open)"
echo "agent peak RSS:  $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$agent/status)"
[ -z "${NO_PROBE:-}" ] && echo "deadline -> /metrics: $(cat /tmp/live-replay-probe.$$) s (silent client, keepalive 1, during the replay)"
rm -f /tmp/live-replay-probe.$$
start=$(date +%s.%N)
size=$(curl -s localhost:$port/sessions | wc -c)
echo "/sessions:       $size bytes in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}') s"
if [ -z "${NO_ANALYZE:-}" ]; then
  analyze_bin=./target/dist/mqtt-keepalive
  [ -x "$analyze_bin" ] || analyze_bin=$BIN
  TIMEFORMAT='%U %S'
  t=$( { time "$analyze_bin" analyze -f json "$pcap" > /dev/null; } 2>&1 )
  echo "analyze (file):  $(awk -v t="$t" -v n="$sent" 'BEGIN {split(t, a, " "); c = (a[1] + a[2]) * 1000; printf "%d ms CPU = %.3f us/packet", c, c * 1000 / n}')"
fi
