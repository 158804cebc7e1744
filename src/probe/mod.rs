//! `probe`: the keepalive experiment, run against a broker by the tool's own test clients.
//!
//! Contract: [`run`] connects to the broker once as a Will watcher (a subscriber on the probe
//! topic); if that fails, it returns a [`ProbeError`] saying why (no scenario runs). Then every
//! [`scenario::Scenario`] of [`scenario::plan`] runs at once, each on its own connection with its
//! own client id (`mkp-<run id>-<tag>`, within 23 characters) and a Will on `<topic prefix>/<run id>/<scenario>`.
//! Each connection's bytes, as its own socket sent and received them, go through the analyser's
//! own MQTT decoder and [`crate::session::Session`], timed by the probe's clock: so the verdicts
//! (`on_time`, `late`, `early`, `not_enforced`), their tolerance and their names are those of
//! `analyze`, and a capture of the same run analysed by `analyze` gives the same verdict per
//! connection (timing differs only by the time between the wire and the socket). The run stops
//! at `max_wait` after it began, or when `stop` is set (Ctrl-C): connections still open then send
//! a DISCONNECT (no Will) and the report is of what was seen so far. The clock is read in one
//! place, [`Clock`].

pub mod client;
pub mod report;
pub mod scenario;

use crate::time::Timestamp;
use client::{TlsOptions, Version};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("the broker refused the connection: CONNACK code {code:#04x} ({})", report::connack_meaning(*code, *v5))]
    Refused { code: u8, v5: bool },
    #[error("the broker at {target}: {reason}")]
    Protocol { target: String, reason: String },
}

/// URL schemes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scheme {
    Mqtt,
    Mqtts,
    Ws,
    Wss,
}

impl Scheme {
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
    fn ws_name(self) -> &'static str {
        if self.is_tls() { "wss" } else { "ws" }
    }
}

/// Where the broker is: `mqtt://HOST[:PORT]`, `mqtts://…`, `ws://HOST[:PORT][/PATH]`, `wss://…`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// WebSocket path (starts with `/`); empty for mqtt/mqtts.
    pub path: String,
}

impl Target {
    /// Parses a broker URL. Credentials in the URL are refused (they would end up in process
    /// lists and outputs): use `--username` and `--password-file`.
    pub fn parse(url: &str) -> Result<Target, ProbeError> {
        let bad = |why: &str| ProbeError::Usage(format!("bad broker URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://HOST[:PORT]"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(bad("the scheme must be mqtt, mqtts, ws or wss")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL: use --username and --password-file"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port must be 1..65535"))?,
            None => match scheme {
                Scheme::Mqtt => 1883,
                Scheme::Mqtts => 8883,
                Scheme::Ws => 80,
                Scheme::Wss => 443,
            },
        };
        let path = match scheme {
            Scheme::Mqtt | Scheme::Mqtts if !path.is_empty() && path != "/" => {
                return Err(bad("a path is only for ws:// and wss://"));
            }
            Scheme::Mqtt | Scheme::Mqtts => String::new(),
            _ if path.is_empty() => "/mqtt".to_string(),
            _ => path.to_string(),
        };
        Ok(Target { scheme, host: host.to_string(), port, path })
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }

    /// The URL as printed (never with credentials).
    pub fn display(&self) -> String {
        format!("{}://{}:{}{}", self.scheme.name(), self.host_for_url(), self.port, self.path)
    }
}

/// A password: never printed (its `Debug` is redacted).
#[derive(Clone, Default)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub target: Target,
    pub version: Version,
    /// Keepalives of the silent scenarios (each 1..=65535).
    pub keepalives: Vec<u16>,
    /// How long the run may last; `None`: the largest scenario deadline plus a margin.
    pub max_wait: Option<Duration>,
    /// How long after the deadline a broker close still counts as on time.
    pub enforcement_tolerance: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: TlsOptions,
    /// Will topics are `<topic_prefix>/<run id>/<scenario>`.
    pub topic_prefix: String,
}

/// Margin past the largest scenario deadline in the default `max_wait`: brokers that check on a
/// coarse cadence close several seconds late, and a close after the run ends counts as not
/// enforced.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(10);

impl ProbeOptions {
    /// The run's length: `max_wait`, or the largest deadline of the plan plus [`DEFAULT_MARGIN`].
    pub fn run_length(&self) -> Duration {
        self.max_wait.unwrap_or_else(|| {
            scenario::plan(&self.keepalives).iter().filter_map(|s| s.expected_end()).max().unwrap_or_default()
                + self.enforcement_tolerance
                + DEFAULT_MARGIN
        })
    }

    /// Checks the options before anything connects.
    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.keepalives.is_empty() {
            return Err(ProbeError::Usage("--keepalives needs at least one value".into()));
        }
        if let Some(k) = self.keepalives.iter().find(|k| **k == 0) {
            return Err(ProbeError::Usage(format!(
                "--keepalives {k}: keepalive 0 (off) is a scenario of its own; give values from 1 to 65535"
            )));
        }
        if self.max_wait.is_some_and(|w| w < Duration::from_secs(1)) {
            return Err(ProbeError::Usage("--max-wait must be at least 1s".into()));
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['#', '+']) {
            return Err(ProbeError::Usage("--topic-prefix must be a topic name without wildcards".into()));
        }
        if self.password.is_some() && self.username.is_none() && self.version == Version::V311 {
            return Err(ProbeError::Usage("MQTT 3.1.1 needs --username with a password".into()));
        }
        Ok(())
    }
}

/// The probe's clock: real time at the start plus a monotonic elapsed time, so timestamps are
/// comparable with a capture's and never go backwards.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Timestamp,
    start: Instant,
}

impl Clock {
    /// Starts the clock now.
    // The probe's only clock reads are here: every other function takes a `Clock` or a time.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Clock {
        Clock { base: Timestamp::now_realtime(), start: Instant::now() }
    }

    /// The time now.
    // The probe's only clock reads are here (see `start`).
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> Timestamp {
        self.base.saturating_add(self.start.elapsed())
    }
}

/// What [`run`] reports about its progress (for a progress bar).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    pub length: Duration,
    pub finished: usize,
    pub scenarios: usize,
}

/// Runs the probe; see the module doc. `progress` is called about every 200 ms.
pub fn run(
    opts: &ProbeOptions,
    stop: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(Progress),
) -> Result<report::ProbeReport, ProbeError> {
    opts.validate()?;
    let tls = if opts.target.scheme.is_tls() { Some(client::tls_config(&opts.tls)?) } else { None };
    let clock = Clock::start();
    let started = clock.now();
    let length = opts.run_length();
    let run_id = format!("{:06x}", (started.as_nanos() as u64 ^ u64::from(std::process::id())) & 0xff_ffff);
    let ctx = Arc::new(scenario::Context {
        target: opts.target.clone(),
        tls,
        version: opts.version,
        username: opts.username.clone(),
        password: opts.password.clone(),
        clock,
        until: started.saturating_add(length),
        stop: stop.clone(),
        session: crate::session::SessionConfig {
            ping_timeout: None,
            enforcement_tolerance: opts.enforcement_tolerance,
            activity_events: false,
        },
        run_id: run_id.clone(),
        topic: format!("{}/{}", opts.topic_prefix, run_id),
        watch_until: std::sync::atomic::AtomicI64::new(i64::MAX),
    });
    // The Will watcher connects first: if the broker cannot be reached, nothing else runs.
    let watcher = scenario::WillWatcher::connect(ctx.clone())?;
    let plan = scenario::plan(&opts.keepalives);
    let scenarios = plan.len();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = plan
        .into_iter()
        .map(|s| {
            let ctx = ctx.clone();
            let done = done.clone();
            let name = s.clone();
            let handle = std::thread::spawn(move || {
                let r = scenario::run_scenario(&s, &ctx);
                done.fetch_add(1, Ordering::Relaxed);
                r
            });
            (name, handle)
        })
        .collect();
    let watcher = std::thread::spawn(move || watcher.run());
    loop {
        let now = clock.now();
        let finished = done.load(Ordering::Relaxed);
        progress(Progress { elapsed: now.since(started), length, finished, scenarios });
        if finished == scenarios {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut results: Vec<_> = handles
        .into_iter()
        .map(|(s, h)| {
            h.join().unwrap_or_else(|_| scenario::ScenarioResult::failed(&s, "internal error (thread panicked)"))
        })
        .collect();
    // Wills of the last closes may still be on their way: the watcher waits a little for them.
    ctx.watcher_done(&clock);
    let wills = watcher.join().unwrap_or_else(|_| scenario::WillLog {
        arrivals: Vec::new(),
        lost_at: Some((clock.now(), "internal error (thread panicked)".into())),
    });
    scenario::attach_wills(&mut results, &wills);
    let ended = clock.now();
    Ok(report::ProbeReport::new(opts, &run_id, started, ended, stop.load(Ordering::Relaxed), results, &wills))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_scheme() {
        let t = Target::parse("mqtt://broker.example:1884").unwrap();
        assert_eq!((t.scheme, t.host.as_str(), t.port, t.path.as_str()), (Scheme::Mqtt, "broker.example", 1884, ""));
        assert_eq!(Target::parse("mqtts://h").unwrap().port, 8883);
        let w = Target::parse("ws://127.0.0.1:9001/mqtt/ws").unwrap();
        assert_eq!((w.scheme, w.port, w.path.as_str()), (Scheme::Ws, 9001, "/mqtt/ws"));
        assert_eq!(Target::parse("wss://h").unwrap().path, "/mqtt");
        let v6 = Target::parse("mqtt://[::1]:1883").unwrap();
        assert_eq!((v6.host.as_str(), v6.display()), ("::1", "mqtt://[::1]:1883".to_string()));
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        for (url, why) in [
            ("broker:1883", "expected mqtt://"),
            ("http://h", "scheme"),
            ("mqtt://:1883", "no host"),
            ("mqtt://h:0", "port"),
            ("mqtt://h:99999", "port"),
            ("mqtt://h/path", "only for ws"),
            ("mqtt://u:pw@h", "credentials"),
            ("mqtt://[::1", "unclosed"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw@") || url.contains("pw@") && e.contains("bad broker URL"));
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret(b"hunter2".to_vec())), "Secret(<redacted>)");
    }

    fn opts(keepalives: Vec<u16>) -> ProbeOptions {
        ProbeOptions {
            target: Target::parse("mqtt://localhost").unwrap(),
            version: Version::V311,
            keepalives,
            max_wait: None,
            enforcement_tolerance: Duration::from_secs(1),
            username: None,
            password: None,
            tls: TlsOptions::default(),
            topic_prefix: "mqtt-keepalive/probe".into(),
        }
    }

    #[test]
    fn default_run_length_covers_the_largest_deadline() {
        // silent-10: deadline 15 s after CONNECT, + 1 s tolerance + 10 s margin.
        assert_eq!(opts(vec![1, 2, 3, 5, 10]).run_length(), Duration::from_secs(26));
        let mut o = opts(vec![5]);
        o.max_wait = Some(Duration::from_secs(3));
        assert_eq!(o.run_length(), Duration::from_secs(3));
    }

    #[test]
    fn option_checks() {
        assert!(opts(vec![]).validate().is_err());
        assert!(opts(vec![0, 5]).validate().unwrap_err().to_string().contains("keepalive 0"));
        let mut o = opts(vec![5]);
        o.topic_prefix = "a/#".into();
        assert!(o.validate().is_err());
        assert!(opts(vec![5]).validate().is_ok());
        let mut o = opts(vec![5]);
        o.max_wait = Some(Duration::from_millis(10));
        assert!(o.validate().unwrap_err().to_string().contains("--max-wait"));
    }
}
