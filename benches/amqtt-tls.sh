#!/usr/bin/env bash
# amqtt (PyPI `amqtt`, a Python asyncio MQTT broker: OpenSSL driven through memory BIOs, not
# sockets) with one TLS listener on 127.0.0.1:PORT, anonymous clients allowed, its own logging
# quiet. DIR holds server.crt and server.key (and gets amqtt-PORT.yaml). Runs in the foreground
# and replaces this shell (exec), so the caller's $! is the broker's pid, as `--pid` wants it.
#   bash benches/amqtt-tls.sh PORT DIR
# Install: pip install amqtt==0.12.1
set -euo pipefail
port=$1
dir=$(cd "$2" && pwd)
cat > "$dir/amqtt-$port.yaml" <<YAML
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:$port
    max_connections: 0
    ssl: true
    certfile: $dir/server.crt
    keyfile: $dir/server.key
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
YAML
# The console script is a shim under pyenv: run the interpreter itself so $! is the broker.
exec python3 -c 'import sys; from amqtt.scripts.broker_script import app; sys.argv = ["amqtt", "-c", sys.argv[1]]; app()' "$dir/amqtt-$port.yaml"
