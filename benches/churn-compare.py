#!/usr/bin/env python3
"""Compares what churn clients did (benches/churn-clients.py's JSON) with an agent's /metrics and,
optionally, with `analyze -f openmetrics` of a recording of the same run (its last sample of each
series: the same series the live agent serves, so both are read by one definition).

Prints one row per count: clients / live agent / offline analysis, and `ok` or `DIFF`; exits 1
when any count differs, 0 when all agree.

usage: churn-compare.py CLIENTS.json LIVE-METRICS.txt [OFFLINE.openmetrics]
"""
import json
import re
import sys

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(\S+))?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Each series' value ({(name, labels): value}); a series sampled several times (OpenMetrics
    with timestamps) keeps its latest sample. `instance` and `job` labels are left out."""
    latest = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels, value, ts = m.groups()
        labels = tuple(sorted((k, v) for k, v in LABEL.findall(labels or "") if k not in ("instance", "job")))
        t = float(ts) if ts else 0.0
        key = (name, labels)
        if key not in latest or t >= latest[key][0]:
            latest[key] = (t, float(value))
    return {k: v for k, (_, v) in latest.items()}


def total(series, name, **want):
    """The sum of every series `name` whose labels include `want`; None if there is none."""
    values = [v for (n, labels), v in series.items() if n == name and all((k, w) in labels for k, w in want.items())]
    return int(sum(values)) if values else None


def plus(a, b):
    return None if a is None and b is None else (a or 0) + (b or 0)


def rows(clients, series):
    p = "mqtt_keepalive_"
    c = dict(clients)
    c["by_broker"] = c["silent_closed_by_broker"] + c.get("closed_by_broker_early", 0)
    return [
        ("connections", c["connects"], total(series, p + "connects_total")),
        ("DISCONNECT closes", c["disconnect"], total(series, p + "closes_total", kind="disconnect")),
        ("orderly closes by clients (FIN; TLS: close_notify)", c["fin"],
         plus(total(series, p + "closes_total", kind="fin", by="client"),
              total(series, p + "closes_total", kind="close_notify", by="client"))),
        ("RST closes by clients (aborts)", c["rst"], total(series, p + "closes_total", kind="rst", by="client")),
        ("closes by the broker (silent clients, overruns)", c["by_broker"], total(series, p + "closes_total", by="broker")),
        ("closes without DISCONNECT", c["fin"] + c["rst"] + c["by_broker"],
         total(series, p + "closes_without_disconnect_total")),
        ("PINGREQ", c["pingreq"], total(series, p + "pings_total", direction="request")),
        ("answered pings (PINGRESP)", c["pingresp"], total(series, p + "pings_total", direction="response")),
        ("pings unanswered", c["pingreq"] - c["pingresp"], total(series, p + "pings_unanswered_total")),
        ("sessions open at the end", 0, total(series, p + "sessions_open")),
    ]


def main():
    clients = json.load(open(sys.argv[1]))
    live = parse(open(sys.argv[2]).read())
    offline = parse(open(sys.argv[3]).read()) if len(sys.argv) > 3 else None
    live_rows = rows(clients, live)
    offline_rows = rows(clients, offline) if offline is not None else [None] * len(live_rows)
    width = max(len(r[0]) for r in live_rows)
    head = f"{'count':<{width}}  {'clients':>9}  {'live agent':>10}  {'offline':>9}"
    print(head)
    print("-" * (len(head) + 6))
    mismatches = 0
    for lr, orow in zip(live_rows, offline_rows):
        name, want, got = lr
        off = orow[2] if orow else None
        fine = got == want and (orow is None or off == want)
        mismatches += not fine
        show = lambda v: "-" if v is None else str(v)  # noqa: E731
        print(f"{name:<{width}}  {want:>9}  {show(got):>10}  {show(off) if orow else 'n/a':>9}  {'ok' if fine else 'DIFF'}")
    print(f"mismatches: {mismatches}")
    if clients.get("failed"):
        print(f"clients that failed (not counted above as done): {clients['failed']}")
    sys.exit(1 if mismatches else 0)


main()
