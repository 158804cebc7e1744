//! The command line (the binary's, as in ripgrep): raw arguments to the library's validated
//! options. Parse tests beside it.

use clap::{Parser, Subcommand, ValueEnum};
use mqtt_keepalive::app::AnalyzeOptions;
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::session::SessionConfig;
use mqtt_keepalive::tracker::TrackerConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Passive MQTT keepalive analysis: does every client's keepalive contract hold?
#[derive(Parser, Debug)]
#[command(name = "mqtt-keepalive", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse pcap/pcapng captures and report each MQTT session's keepalive verdict.
    Analyze(AnalyzeArgs),
    /// Watch live traffic on a broker host and serve Prometheus metrics over HTTP.
    Live(LiveArgs),
}

/// Default address of the agent's HTTP endpoints.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9883";

/// Capture implementations.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// Linux AF_PACKET socket with a kernel BPF filter; no system library needed.
    Afpacket,
    /// libpcap (builds with `--features libpcap`); allows --filter.
    Libpcap,
}

#[derive(clap::Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on (repeatable; `any` for all).
    #[arg(short, long = "interface", value_name = "IFACE", required = true)]
    pub interfaces: Vec<String>,
    /// Address for /metrics, /healthz, /sessions.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Write the event stream as JSON lines to FILE (appending), or `-` for standard output.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Label the client_expired metric with client ids for at most N clients (0: never; client
    /// ids may be personal data).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub client_id_labels: usize,
    /// Closed sessions kept for /sessions.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub keep_closed: usize,
    /// Capture implementation.
    #[arg(long, value_enum, default_value_t = BackendArg::Afpacket)]
    pub backend: BackendArg,
    /// A libpcap filter expression instead of the port filter (libpcap backend only).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Kernel ring per capture socket (afpacket backend), e.g. 32MiB; 0: no ring (one recvmsg
    /// per packet).
    #[arg(long, value_parser = parse_size, default_value = "32MiB", value_name = "BYTES")]
    pub ring_size: usize,
    /// Capture threads (afpacket ring): the kernel spreads connections over them by flow hash
    /// (PACKET_FANOUT_HASH); each runs its own analysis. 1: no fanout.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub capture_threads: u16,
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// A size in bytes: a number with an optional binary unit (KiB, MiB, GiB; K, M, G alike).
fn parse_size(s: &str) -> Result<usize, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("{s:?} is not a size (e.g. 32MiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(format!("{s:?}: unknown unit (KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

impl LiveArgs {
    /// The options for `mqtt_keepalive::live::run`.
    pub fn options(&self) -> mqtt_keepalive::live::LiveOptions {
        mqtt_keepalive::live::LiveOptions {
            interfaces: self.interfaces.clone(),
            ports: self.rules.ports.clone(),
            tracker: self.rules.tracker_config(),
            listen: self.listen,
            events: self.events.clone(),
            client_id_labels: self.client_id_labels,
            keep_closed: self.keep_closed,
            backend: match self.backend {
                BackendArg::Afpacket => mqtt_keepalive::live::Backend::AfPacket,
                BackendArg::Libpcap => mqtt_keepalive::live::Backend::Libpcap,
            },
            filter: self.filter.clone(),
            ring_size: self.ring_size,
            capture_threads: usize::from(self.capture_threads),
        }
    }
}

/// Output formats of `analyze`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Text,
    /// One JSON document (versioned; see README).
    Json,
    /// The event stream, one JSON object per line, in time order.
    Jsonl,
}

/// Options shared by every command that runs the analysis.
#[derive(clap::Args, Debug)]
pub struct RuleArgs {
    /// TCP port a broker listens on (repeatable).
    #[arg(short, long = "port", value_name = "PORT", default_values_t = [1883])]
    pub ports: Vec<u16>,
    /// How long a PINGREQ may wait for its PINGRESP [default: the effective keepalive, 30s when unknown].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ping_timeout: Option<Duration>,
    /// How long after the deadline a broker close still counts as on time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", value_name = "DURATION")]
    pub enforcement_tolerance: Duration,
    /// Most TCP connections tracked at once; more are refused and counted.
    #[arg(long, default_value_t = 1 << 21, value_name = "N")]
    pub max_flows: usize,
    /// Most out-of-order bytes buffered per connection direction.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub max_buffered: usize,
    /// Most bytes held across all connections (out-of-order data and partial packets).
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_buffered_total: usize,
    /// An open connection with no packets for this long (and at least 3 keepalives) is evicted.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub flow_timeout: Duration,
}

impl RuleArgs {
    /// The tracker settings these arguments describe.
    pub fn tracker_config(&self) -> TrackerConfig {
        TrackerConfig {
            ports: PortSet::new(&self.ports),
            session: SessionConfig {
                ping_timeout: self.ping_timeout,
                enforcement_tolerance: self.enforcement_tolerance,
                activity_events: false,
            },
            max_flows: self.max_flows,
            max_buffered_per_flow: self.max_buffered,
            max_buffered_total: self.max_buffered_total,
            flow_timeout: self.flow_timeout,
            ..TrackerConfig::default()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng), read in order as one capture; `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Progress bar on stderr for large files [default: when stderr is a terminal].
    #[arg(long)]
    pub no_progress: bool,
    /// Sessions listed in the text table, most severe first (0: all); the summary counts every
    /// session. Only the listed ones are held in memory.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub top: usize,
    #[command(flatten)]
    pub rules: RuleArgs,
}

impl AnalyzeArgs {
    /// The options for `mqtt_keepalive::app::analyze`.
    pub fn options(&self) -> AnalyzeOptions {
        AnalyzeOptions {
            files: self.files.clone(),
            tracker: self.rules.tracker_config(),
            ports: self.rules.ports.clone(),
            progress: !self.no_progress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mqtt-keepalive").chain(args.iter().copied()))
    }

    #[test]
    fn live_defaults_and_options() {
        let Command::Live(l) = parse(&["live", "-i", "eth0", "-i", "lo", "--events", "-"]).unwrap().command else {
            panic!()
        };
        assert_eq!(l.interfaces, ["eth0", "lo"]);
        assert_eq!(l.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!((l.client_id_labels, l.backend), (0, BackendArg::Afpacket));
        assert!(parse(&["live"]).is_err(), "an interface is required");
        assert_eq!((l.ring_size, l.capture_threads), (32 << 20, 1));
        assert!(parse(&["live", "-i", "lo", "--capture-threads", "0"]).is_err());
    }

    #[test]
    fn ring_sizes() {
        let ring = |v: &str| match parse(&["live", "-i", "lo", "--ring-size", v]).map(|c| c.command) {
            Ok(Command::Live(l)) => Ok(l.ring_size),
            Ok(_) => panic!(),
            Err(e) => Err(e),
        };
        assert_eq!(ring("64MiB").unwrap(), 64 << 20);
        assert_eq!(ring("16M").unwrap(), 16 << 20);
        assert_eq!(ring("0").unwrap(), 0);
        assert_eq!(ring("4096").unwrap(), 4096);
        assert!(ring("lots").is_err() && ring("3XB").is_err());
    }

    #[test]
    fn analyze_defaults() {
        let Command::Analyze(a) = parse(&["analyze", "x.pcap"]).unwrap().command else { panic!() };
        assert_eq!(a.rules.ports, [1883]);
        assert_eq!(a.format, Format::Text);
        assert_eq!(a.rules.enforcement_tolerance, Duration::from_secs(1));
        assert_eq!(a.rules.ping_timeout, None);
    }

    #[test]
    fn repeated_ports_and_durations() {
        let Command::Analyze(a) =
            parse(&["analyze", "-p", "1883", "--port", "8883", "--ping-timeout", "2s", "--format", "json", "a", "b"])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert_eq!(a.rules.ports, [1883, 8883]);
        assert_eq!(a.rules.ping_timeout, Some(Duration::from_secs(2)));
        assert_eq!(a.files.len(), 2);
        let cfg = a.rules.tracker_config();
        assert!(cfg.ports.contains(8883) && !cfg.ports.contains(80));
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse(&["analyze"]).is_err());
        assert!(parse(&["analyze", "--port", "70000", "x"]).is_err());
        assert!(parse(&["analyze", "--ping-timeout", "soon", "x"]).is_err());
    }
}
