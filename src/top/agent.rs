//! `top` against a running agent: bounded HTTP requests for `/sessions` and `/metrics`, and
//! their answers as a [`Snapshot`].
//!
//! Contract: [`Agent::fetch`] makes two GET requests, one after the other (never two at once):
//! `/sessions?limit=N&sort=deadline[&client_id=PATTERN]` (the agent picks the N open sessions
//! nearest their deadline and the N newest closes, so the answer stays small with 100k sessions
//! open) and `/metrics`. Each has a connect and a read timeout ([`TIMEOUT`]) and a size cap
//! ([`MAX_BODY`]); any failure is an [`AgentError`] saying which request and why, never a panic.
//! Plain `http://` only. The request is HTTP/1.0 with `Connection: close`, so the answer is the
//! bytes up to the end of the connection (no chunked encoding): a few lines on `std::net` and
//! `httparse`, where an HTTP client crate would add a dependency tree for two GETs.
//! The agent's clock is read from its open sessions (last activity + silence); without any, the
//! local clock stands in.

use super::model::{Close, Row, Snapshot, Totals};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect and read timeout of one request.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Rates are over about this long (the oldest totals read within it, or just before).
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Largest answer read.
pub const MAX_BODY: usize = 64 << 20;

/// Why the agent could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("'{0}' is not an agent address: write http://HOST:PORT (e.g. http://localhost:9883)")]
    Address(String),
    #[error("{url}: {error}")]
    Io { url: String, error: std::io::Error },
    #[error("{url}: {status} {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: not an HTTP answer")]
    NotHttp { url: String },
    #[error("{url}: answer over {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url}: not the sessions document: {error}")]
    Json { url: String, error: String },
}

/// A running agent's address.
#[derive(Clone, Debug)]
pub struct Agent {
    host: String,
    port: u16,
    /// The base path (without a trailing `/`), for an agent behind a proxy.
    prefix: String,
    /// Earlier totals and when they were read (the last [`RATE_WINDOW`]), for the rates.
    history: std::collections::VecDeque<(std::time::Instant, Totals)>,
}

impl Agent {
    /// `http://HOST[:PORT][/PREFIX]` (port 9883 when not given).
    pub fn parse(url: &str) -> Result<Agent, AgentError> {
        let bad = || AgentError::Address(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, 9883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Agent { host: host.to_string(), port, prefix: prefix.to_string(), history: Default::default() })
    }

    /// The address as shown.
    pub fn name(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.prefix)
    }

    /// One GET of `path` (with its query): the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<String, AgentError> {
        let url = format!("{}{path}", self.name());
        let io = |error: std::io::Error| AgentError::Io { url: url.clone(), error };
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let request = format!(
            "GET {}{path} HTTP/1.0\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: mqtt-keepalive-top\r\n\r\n",
            self.prefix, self.host, self.port
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut answer = Vec::new();
        stream.take(MAX_BODY as u64 + 1).read_to_end(&mut answer).map_err(io)?;
        if answer.len() > MAX_BODY {
            return Err(AgentError::TooLarge { url });
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(&answer) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Err(AgentError::NotHttp { url }),
        };
        let status = response.code.unwrap_or(0);
        let body = String::from_utf8_lossy(&answer[head..]).into_owned();
        if status != 200 {
            return Err(AgentError::Status { url, status, body: body.trim().chars().take(200).collect() });
        }
        Ok(body)
    }

    /// The sessions (at most `rows` open ones, nearest their deadline, and `rows` closes) and
    /// the totals, with rates from the previous fetch.
    pub fn fetch(&mut self, rows: usize, client_id: Option<&str>) -> Result<Snapshot, AgentError> {
        let mut path = format!("/sessions?limit={}&sort=deadline", rows.max(1));
        if let Some(p) = client_id {
            path.push_str("&client_id=");
            path.push_str(&percent_encode(p));
        }
        let sessions = self.get(&path)?;
        let url = format!("{}{path}", self.name());
        let mut snap = sessions_snapshot(&sessions).map_err(|error| AgentError::Json { url, error })?;
        let metrics = self.get("/metrics")?;
        let mut totals = totals_from_metrics(&metrics);
        let read = crate::time::monotonic_now();
        while self.history.len() > 1
            && self.history.get(1).is_some_and(|(at, _)| read.duration_since(*at) >= RATE_WINDOW)
        {
            self.history.pop_front();
        }
        if let Some((at, earlier)) = self.history.front() {
            totals.rate_from(earlier, read.duration_since(*at).as_secs_f64());
        }
        self.history.push_back((read, totals.clone()));
        snap.totals = totals;
        snap.source = self.name();
        Ok(snap)
    }
}

/// A query value: everything but unreserved characters as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `/sessions` document as a snapshot (without totals).
pub fn sessions_snapshot(body: &str) -> Result<Snapshot, String> {
    let doc: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if doc["format"] != "mqtt-keepalive/sessions" {
        return Err("no \"format\": \"mqtt-keepalive/sessions\"".into());
    }
    let sessions = doc["sessions"].as_array().ok_or("no \"sessions\" list")?;
    let mut snap = Snapshot { open_total: doc["open"].as_u64().unwrap_or(0), ..Snapshot::default() };
    let mut now: Option<f64> = None;
    for s in sessions {
        let row = row(s);
        if row.close.is_none() {
            if let (Some(t), Some(silence)) = (s["last_activity"].as_f64(), s["silence_s"].as_f64()) {
                now = Some(now.map_or(t + silence, |n: f64| n.max(t + silence)));
            }
            snap.open.push(row);
        } else {
            snap.closed.push(row);
        }
    }
    snap.now = now.unwrap_or_else(|| crate::time::Timestamp::now_realtime().as_secs_f64());
    Ok(snap)
}

/// One session object of `/sessions` as a row.
fn row(s: &Value) -> Row {
    let str_of = |v: &Value| v.as_str().map(str::to_string);
    let open = s["close"]["kind"] == "open";
    let close = (!open).then(|| Close {
        at: s["closed"].as_f64().or_else(|| s["ended"].as_f64()).unwrap_or(0.0),
        kind: str_of(&s["close"]["kind"]).unwrap_or_default(),
        by: str_of(&s["close"]["by"]),
        reason_code: s["close"]["reason_code"].as_u64().and_then(|c| u16::try_from(c).ok()),
        enforcement: str_of(&s["enforcement"]["verdict"]).map(|v| (v, s["enforcement"]["lag_s"].as_f64())),
    });
    let events = s["events"].as_array().map(|list| list.iter().map(event_line).collect()).unwrap_or_default();
    Row {
        id: s["id"].as_u64().unwrap_or(0),
        client: str_of(&s["client"]).unwrap_or_default(),
        client_id: str_of(&s["client_id"]),
        transport: str_of(&s["transport"]).unwrap_or_default(),
        keepalive_s: s["effective_keepalive_s"].as_u64().map(|k| k as u32),
        started: s["started"].as_f64().unwrap_or(0.0),
        last_activity: s["last_activity"].as_f64(),
        deadline: s["deadline"].as_f64(),
        expired: s["expired"].as_bool().unwrap_or(false),
        pingreq: s["pingreq"].as_u64().unwrap_or(0),
        pingresp: s["pingresp"].as_u64().unwrap_or(0),
        rtt_ms: s["ping_rtt_ms"]["median"].as_f64(),
        close,
        events,
    }
}

/// An event object (`{"ts":..,"kind":..,...}`) as a timeline line: its time, then its kind and
/// fields (`connect keepalive_s=5 client_id=dev-1`; times of day for the times in it).
pub fn event_line(e: &Value) -> (f64, String) {
    let ts = e["ts"].as_f64().unwrap_or(0.0);
    let mut text = e["kind"].as_str().unwrap_or("?").to_string();
    if let Some(fields) = e.as_object() {
        for (k, v) in fields {
            if ["ts", "kind", "session", "client", "broker"].contains(&k.as_str()) || v.is_null() {
                continue;
            }
            match v {
                Value::String(s) => text.push_str(&format!(" {k}={s}")),
                // Times (Unix seconds) as the time of day, as the timeline's own column.
                Value::Number(n) if ["last_activity", "sent", "last_packet"].contains(&k.as_str()) => {
                    let t = crate::time::Timestamp::from_secs_f64(n.as_f64().unwrap_or(0.0));
                    text.push_str(&format!(" {k}={}", crate::sink::report::times::Zone::Utc.time_of_day(t)));
                }
                other => text.push_str(&format!(" {k}={other}")),
            }
        }
    }
    (ts, text)
}

/// The dashboard's totals from a `/metrics` answer (Prometheus text or OpenMetrics): each
/// metric's series summed.
pub fn totals_from_metrics(text: &str) -> Totals {
    let mut sums: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *sums.entry(name).or_default() += v;
        }
    }
    let get = |name: &str| {
        let full = format!("mqtt_keepalive_{name}");
        sums.get(full.as_str()).or_else(|| sums.get(full.trim_end_matches("_total"))).copied().unwrap_or(0.0)
    };
    let n = |name: &str| get(name).max(0.0) as u64;
    let rtt_count = get("ping_rtt_seconds_count");
    Totals {
        open: n("sessions_open"),
        expired_open: n("sessions_expired_open"),
        connects: n("connects_total"),
        closes: n("closes_total"),
        closes_without_disconnect: n("closes_without_disconnect_total"),
        expiries: n("expired_total"),
        pings: n("pings_total"),
        pings_unanswered: n("pings_unanswered_total"),
        packets: Some(n("capture_packets_total")),
        dropped: Some(n("capture_dropped_packets_total")),
        rtt_mean_ms: (rtt_count > 0.0).then(|| get("ping_rtt_seconds_sum") / rtt_count * 1000.0),
        rates: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Side;
    use crate::mqtt::Protocol;
    use crate::session::event::FlowKeyJson;
    use crate::session::{CloseKind, Event, EventKind};
    use crate::sink::Sink;
    use crate::sink::metrics::Metrics;
    use crate::time::Timestamp;

    #[test]
    fn addresses() {
        let a = Agent::parse("http://localhost:9883").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.name()), ("localhost", 9883, "http://localhost:9883".into()));
        assert_eq!(Agent::parse("http://10.1.2.3").unwrap().port, 9883);
        assert_eq!(Agent::parse("http://[::1]:9100/agent/").unwrap().name(), "http://::1:9100/agent");
        for bad in ["localhost:9883", "https://x:1", "http://:1", "http://x:port"] {
            assert!(Agent::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_encode("dev-*&x=1 ä"), "dev-%2A%26x%3D1%20%C3%A4");
    }

    #[test]
    fn totals_from_the_metrics_sink_itself() {
        let mut registry = prometheus_client::registry::Registry::default();
        let mut m = Metrics::new(&mut registry, 0);
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        let ev = |ts: f64, kind| Event { ts: Timestamp::from_secs_f64(ts), session: 1, flow, kind, client_id: None };
        for e in [
            ev(0.0, EventKind::SessionStart { mid_stream: false }),
            ev(0.0, EventKind::Transport { transport: crate::layer::Transport::Tcp }),
            ev(
                0.0,
                EventKind::Connect {
                    protocol: Protocol::V3_1_1,
                    keepalive_s: 2,
                    client_id: Some("a".into()),
                    clean_start: true,
                    will: false,
                },
            ),
            ev(1.0, EventKind::Pingreq),
            ev(1.004, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(4)) }),
            ev(
                9.0,
                EventKind::Close {
                    close: CloseKind::Fin,
                    by: Side::Broker,
                    after_silence_s: Duration::from_secs(8),
                    reason_code: None,
                },
            ),
        ] {
            m.on_event(&e).unwrap();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for exposition in [text.clone(), crate::sink::metrics::openmetrics_to_prometheus(&text)] {
            let t = totals_from_metrics(&exposition);
            assert_eq!((t.connects, t.closes, t.pings, t.closes_without_disconnect), (1, 1, 2, 0), "{exposition}");
            assert!((t.rtt_mean_ms.unwrap() - 4.0).abs() < 0.01);
        }
    }

    #[test]
    fn a_sessions_document_as_rows() {
        let body = r#"{"format":"mqtt-keepalive/sessions","version":1,"open":7,"sessions":[
          {"id":3,"client":"127.0.0.1:4000","client_id":"quiet","transport":"tcp","effective_keepalive_s":5,
           "started":100.0,"last_activity":101.0,"silence_s":9.5,"deadline":108.5,"expired":true,"pingreq":0,
           "pingresp":0,"ping_rtt_ms":null,"close":{"kind":"open","by":null},"events":[
             {"ts":100.5,"kind":"connect","keepalive_s":5,"client_id":"quiet","will":false},
             {"ts":108.5,"kind":"keepalive_expired","keepalive_s":5,"last_activity":101.0}]},
          {"id":2,"client":"127.0.0.1:4001","client_id":null,"transport":"tls","effective_keepalive_s":null,
           "started":90.0,"ended":99.0,"closed":98.0,"expired":true,"pingreq":2,"pingresp":2,
           "ping_rtt_ms":{"min":1.0,"median":1.5,"max":2.0},
           "close":{"kind":"fin","by":"broker","reason_code":null},"enforcement":{"verdict":"late","lag_s":2.5}}]}"#;
        let s = sessions_snapshot(body).unwrap();
        assert_eq!((s.open_total, s.open.len(), s.closed.len(), s.now), (7, 1, 1, 110.5));
        let o = &s.open[0];
        assert_eq!(
            (o.client_id.as_deref(), o.keepalive_s, o.deadline, o.expired),
            (Some("quiet"), Some(5), Some(108.5), true)
        );
        assert_eq!(o.events[0], (100.5, "connect client_id=quiet keepalive_s=5 will=false".to_string()));
        assert_eq!(o.events[1].1, "keepalive_expired keepalive_s=5 last_activity=00:01:41.000");
        let c = s.closed[0].close.as_ref().unwrap();
        assert_eq!((c.at, c.kind.as_str(), c.by.as_deref()), (98.0, "fin", Some("broker")));
        assert_eq!(c.enforcement, Some(("late".into(), Some(2.5))));
        assert_eq!(s.closed[0].rtt_ms, Some(1.5));
        assert!(sessions_snapshot("{}").is_err());
        assert!(sessions_snapshot("not json").is_err());
    }

    #[test]
    fn a_dead_agent_is_an_error_that_names_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut a = Agent::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = a.fetch(10, None).unwrap_err().to_string();
        assert!(e.starts_with(&format!("http://127.0.0.1:{port}/sessions?limit=10&sort=deadline: ")), "{e}");
    }

    #[test]
    fn a_non_http_answer_and_an_error_status() {
        for (answer, want) in [
            ("garbage\r\n\r\n", "not an HTTP answer"),
            ("HTTP/1.1 400 Bad Request\r\n\r\nlimit: not a number", "400 limit: not a number"),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            });
            let e = Agent::parse(&format!("http://127.0.0.1:{port}")).unwrap().get("/x").unwrap_err().to_string();
            assert!(e.ends_with(want), "{e}");
            server.join().unwrap();
        }
    }
}
