#!/usr/bin/env python3
"""Compares what churn clients did (benches/churn-clients.py's JSON) with an agent's /metrics and,
optionally, with `analyze -f openmetrics` of a recording of the same run (its last sample of each
series: the same series the live agent serves, so both are read by one definition).

Prints one row per count: clients / live agent / offline analysis, and `ok` (the live and the
offline figure are equal, and what the clients did) or `DIFF`; exits 1 when any count differs, 0
when all agree. A PINGREQ a client sent just as the broker closed it (a keepalive overrun on a
machine too loaded to keep time) may or may not have been read by the broker: such pings widen
the clients' PINGREQ and unanswered figures to a range.

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
    """(name, (lowest, highest) the clients allow, figure in `series`) for each count. Exact but
    for a PINGREQ a client sent as the broker closed it (pingreq_at_broker_close): the broker may
    or may not have read it, so it may or may not count, as sent and as unanswered."""
    p = "mqtt_keepalive_"
    c = dict(clients)
    by_broker = c["silent_closed_by_broker"] + c.get("closed_by_broker_early", 0)
    maybe = c.get("pingreq_at_broker_close", 0)
    exact = lambda v: (v, v)  # noqa: E731
    return [
        ("connections", exact(c["connects"]), total(series, p + "connects_total")),
        ("DISCONNECT closes", exact(c["disconnect"]), total(series, p + "closes_total", kind="disconnect")),
        ("orderly closes by clients (FIN; TLS: close_notify)", exact(c["fin"]),
         plus(total(series, p + "closes_total", kind="fin", by="client"),
              total(series, p + "closes_total", kind="close_notify", by="client"))),
        ("RST closes by clients (aborts)", exact(c["rst"]), total(series, p + "closes_total", kind="rst", by="client")),
        ("closes by the broker (silent clients, overruns)", exact(by_broker), total(series, p + "closes_total", by="broker")),
        ("closes without DISCONNECT", exact(c["fin"] + c["rst"] + by_broker),
         total(series, p + "closes_without_disconnect_total")),
        ("PINGREQ", (c["pingreq"] - maybe, c["pingreq"]), total(series, p + "pings_total", direction="request")),
        ("answered pings (PINGRESP)", exact(c["pingresp"]), total(series, p + "pings_total", direction="response")),
        ("pings unanswered", (c["pingreq"] - c["pingresp"] - maybe, c["pingreq"] - c["pingresp"]),
         total(series, p + "pings_unanswered_total")),
        ("sessions open at the end", exact(0), total(series, p + "sessions_open")),
    ]


def main():
    clients = json.load(open(sys.argv[1]))
    live = parse(open(sys.argv[2]).read())
    offline = parse(open(sys.argv[3]).read()) if len(sys.argv) > 3 else None
    live_rows = rows(clients, live)
    offline_rows = rows(clients, offline) if offline is not None else [None] * len(live_rows)
    width = max(len(r[0]) for r in live_rows)
    head = f"{'count':<{width}}  {'clients':>13}  {'live agent':>10}  {'offline':>9}"
    print(head)
    print("-" * (len(head) + 6))
    mismatches = 0
    show = lambda v: "-" if v is None else str(v)  # noqa: E731
    for lr, orow in zip(live_rows, offline_rows):
        name, (lo, hi), got = lr
        off = orow[2] if orow else None
        within = lambda v: v is not None and lo <= v <= hi  # noqa: E731
        fine = within(got) and (orow is None or (within(off) and off == got))
        mismatches += not fine
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        print(f"{name:<{width}}  {want:>13}  {show(got):>10}  {show(off) if orow else 'n/a':>9}  {'ok' if fine else 'DIFF'}")
    print(f"mismatches: {mismatches}")
    if clients.get("failed"):
        print(f"clients that failed (not counted above as done): {clients['failed']}")
    sys.exit(1 if mismatches else 0)


main()
