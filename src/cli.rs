//! The command line (the binary's, as in ripgrep): raw arguments to the library's validated
//! options. Parse tests beside it.

use clap::{Parser, Subcommand, ValueEnum};
use mqtt_keepalive::app::AnalyzeOptions;
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::layer::LayerConfig;
use mqtt_keepalive::layer::tls::{KeyLog, KeyLogError};
use mqtt_keepalive::session::SessionConfig;
use mqtt_keepalive::sink::report::filter::{Glob, SessionFilter};
use mqtt_keepalive::sink::report::text::TextOptions;
use mqtt_keepalive::sink::report::times::{Zone, parse_instant};
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::{DEFAULT_PORTS, TrackerConfig};
use std::path::PathBuf;
use std::sync::Arc;
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
    #[command(after_help = ANALYZE_HELP)]
    Analyze(AnalyzeArgs),
    /// Watch live traffic on a broker host and serve Prometheus metrics over HTTP.
    #[command(after_help = LIVE_HELP)]
    Live(LiveArgs),
    /// Run the keepalive experiment against a broker with test clients and print its enforcement table.
    #[command(after_help = PROBE_HELP)]
    Probe(ProbeArgs),
    /// A terminal view of a running agent (http://HOST:9883) or of captures being analysed:
    /// open sessions nearest their keepalive deadline first, recent closes, totals.
    #[command(after_help = TOP_HELP)]
    Top(TopArgs),
}

/// `top --help`: examples, keys, exit status.
const TOP_HELP: &str = "\
Examples:
  mqtt-keepalive top http://localhost:9883            a running agent (`live`)
  mqtt-keepalive top capture.pcap                     a capture, as it stands at its last packet
  tcpdump -i eth0 -U --immediate-mode -w - 'tcp port 1883' | mqtt-keepalive top -

Keys: s sort (deadline, silence, client id, rtt, started); / filter by client id (* and ?);
p pause; arrows (or j, k) select; Enter the selected session's timeline; Esc back; q quit.

Open sessions past their deadline (expired, not closed by the broker) are always on top. An agent
is asked for the open sessions nearest their deadline, as many as the screen has rows (at most
500), one request at a time; rates are over the last 10 s.

Exit status: 0 quit; 2 bad arguments, unusable input, or not a terminal.";

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// A running agent's address (http://HOST:PORT), or capture files, or `-` for a pipe.
    #[arg(required = true, value_name = "AGENT|FILE")]
    pub targets: Vec<String>,
    /// How often an agent is asked.
    #[arg(long, value_parser = positive_duration, default_value = "1s", value_name = "DURATION")]
    pub refresh: Duration,
    #[command(flatten)]
    pub rules: RuleArgs,
}

impl TopArgs {
    /// The options `top` runs with.
    pub fn options(&self) -> Result<mqtt_keepalive::top::TopOptions, KeyLogError> {
        use mqtt_keepalive::top::{TopOptions, TopSource};
        use std::os::unix::fs::FileTypeExt;
        let source = match self.targets.as_slice() {
            [url] if url.starts_with("http://") || url.starts_with("https://") => TopSource::Agent(url.clone()),
            files => {
                let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
                let live = files
                    .iter()
                    .any(|f| f.as_os_str() == "-" || std::fs::metadata(f).is_ok_and(|m| m.file_type().is_fifo()));
                TopSource::Capture {
                    opts: AnalyzeOptions {
                        files,
                        tracker: self.rules.tracker_config(live)?,
                        ports: self.rules.ports.clone(),
                        progress: false,
                    },
                    live,
                }
            }
        };
        Ok(TopOptions { source, refresh: self.refresh })
    }
}

/// `analyze --help`: examples, durations, exit status.
const ANALYZE_HELP: &str = "\
Examples:
  mqtt-keepalive analyze capture.pcap                 the table, most severe sessions first
  mqtt-keepalive analyze -f json rotated-*.pcap.gz    one JSON document; files read in time order
  mqtt-keepalive analyze -p 1883 -p 8883 capture.pcapng
  tcpdump -i eth0 -U --immediate-mode -w - 'tcp port 1883' | mqtt-keepalive analyze -f jsonl -
                                                      events as they happen; deadlines on the clock

Captures: pcap or pcapng, gzipped or not; several files are read as one capture, in the order
of their first packets. A pipe or FIFO is read as it comes (tcpdump needs -U, and
--immediate-mode, or libpcap hands packets on in batches up to a second late). Ctrl-C ends the
input and still prints the report.

Durations: a number and a unit, e.g. 500ms, 10s, 2m, 1h30m (units: ms, s, m, h).

Exit status: 0 analysed (findings are output, not errors; also after Ctrl-C or a closed output
pipe); 1 a runtime failure (writing output); 2 unusable input (missing file, not a capture,
unsupported link type, a directory) or bad arguments.";

/// `live --help`: examples, durations, exit status.
const LIVE_HELP: &str = "\
Examples:
  mqtt-keepalive live -i eth0                         then scrape http://HOST:9883/metrics
  mqtt-keepalive live -i any -p 1883 -p 8883 --listen 127.0.0.1:9883 --events -
  mqtt-keepalive live -i eth0 --listen :9100

Capturing needs CAP_NET_RAW: sudo setcap cap_net_raw,cap_net_admin=eip $(which mqtt-keepalive)

Durations: a number and a unit, e.g. 500ms, 10s, 2m, 1h30m (units: ms, s, m, h).

Exit status: 0 stopped by SIGINT or SIGTERM; 1 a runtime failure (the interface went away);
2 bad arguments or setup (no such interface, no permission, the port taken).";

/// `probe --help`: examples, durations, exit status.
const PROBE_HELP: &str = "\
Examples:
  mqtt-keepalive probe mqtt://localhost               the default keepalives 1,2,3,5,10
  mqtt-keepalive probe mqtts://broker:8883 --cafile ca.pem --keepalives 2,5 -f json
  mqtt-keepalive probe ws://broker:9001/mqtt --protocol 5 --max-wait 30s

Durations: a number and a unit, e.g. 500ms, 10s, 2m, 1h30m (units: ms, s, m, h).

Exit status: 0 every deadline enforced within tolerance; 3 some deadline not enforced within
tolerance; 130 interrupted by Ctrl-C (the partial table is printed); 2 bad arguments or a broker
the probe cannot reach.";

/// What every duration option accepts, for messages and help.
pub const DURATION_SYNTAX: &str = "a number and a unit, e.g. 500ms, 10s, 2m, 1h30m (units: ms, s, m, h)";

/// A duration option: humantime's syntax, with a message that says what it is.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| format!("'{s}' is not a duration: write {DURATION_SYNTAX}"))
}

/// A duration option that cannot be zero (a timeout, a step).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("must be longer than 0: write {DURATION_SYNTAX}")),
        d => Ok(d),
    }
}

/// A count that cannot be zero.
fn positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// An address to listen on: IP:PORT, HOST:PORT (resolved; the first address) or :PORT (all
/// interfaces, IPv4).
fn listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let bad = || {
        format!(
            "'{s}' is not an address to listen on: use :PORT, HOST:PORT or IP:PORT (e.g. :9883, localhost:9883, 127.0.0.1:9883)"
        )
    };
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_string() };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    let (_, port) = full.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let mut addrs: Vec<std::net::SocketAddr> = full.to_socket_addrs().map_err(|e| format!("{}: {e}", bad()))?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4()); // IPv4 first, as most hosts name localhost
    addrs.into_iter().next().ok_or_else(bad)
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
    /// eBPF probes on the broker's libssl and the kernel's TCP tracepoints: the MQTT inside
    /// TLS with no keys (root; see README "eBPF on the broker host").
    Ebpf,
}

/// How the eBPF backend ties an SSL call to its socket.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingArg {
    /// The socket tracepoints where the kernel has them (Linux 6.3+), else system calls.
    Auto,
    /// sock:sock_recv_length and sock:sock_send_length.
    Tracepoints,
    /// The read/write/recvfrom/sendto system-call tracepoints (older kernels).
    Syscalls,
}

#[derive(clap::Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on (repeatable; `any` for all); needed by packet capture, not by
    /// `--backend ebpf` alone.
    #[arg(short, long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Address for /metrics, /healthz, /sessions: IP:PORT, HOST:PORT or :PORT (all interfaces).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR", value_parser = listen_addr)]
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
    /// Capture implementation; two at once as `afpacket,ebpf` (packet capture on the --port
    /// ports but the --ebpf-port ones, eBPF on those).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "afpacket", value_name = "BACKEND")]
    pub backend: Vec<BackendArg>,
    /// eBPF backend: the broker processes' pids (repeatable); with neither this nor --process,
    /// every process using libssl (filtered by port).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// eBPF backend: the broker processes' name (as /proc/PID/comm or the executable's file
    /// name), found again when the broker restarts.
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    /// eBPF backend beside packet capture: its TLS ports (repeatable; default 8883). With
    /// --backend ebpf alone it watches the --port ports.
    #[arg(long = "ebpf-port", value_name = "PORT")]
    pub ebpf_ports: Vec<u16>,
    /// eBPF backend: how an SSL call is tied to its socket.
    #[arg(long, value_enum, default_value_t = BindingArg::Auto, value_name = "HOW")]
    pub ebpf_binding: BindingArg,
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
    pub fn options(&self) -> Result<mqtt_keepalive::live::LiveOptions, mqtt_keepalive::live::LiveError> {
        use mqtt_keepalive::capture::ebpf::{Binding, EbpfOptions};
        use mqtt_keepalive::live::LiveError;
        let ebpf = self.backend.contains(&BackendArg::Ebpf);
        let mut packets = self.backend.iter().filter(|b| **b != BackendArg::Ebpf);
        let packet = packets.next();
        if packets.any(|b| Some(b) != packet) {
            return Err(LiveError::Unsupported(
                "one packet capture backend at a time (afpacket or libpcap), with or without ebpf".into(),
            ));
        }
        let ebpf_ports = match (packet, self.ebpf_ports.is_empty()) {
            (_, false) => self.ebpf_ports.clone(),
            (None, true) => self.rules.ports.clone(),
            (Some(_), true) => vec![8883],
        };
        let ports = if ebpf {
            self.rules.ports.iter().copied().filter(|p| !ebpf_ports.contains(p)).collect()
        } else {
            self.rules.ports.clone()
        };
        Ok(mqtt_keepalive::live::LiveOptions {
            interfaces: self.interfaces.clone(),
            ports,
            packets: packet.is_some(),
            ebpf: ebpf.then(|| EbpfOptions {
                ports: ebpf_ports,
                pids: self.pids.clone(),
                process: self.process.clone(),
                binding: match self.ebpf_binding {
                    BindingArg::Auto => Binding::Auto,
                    BindingArg::Tracepoints => Binding::SockTracepoints,
                    BindingArg::Syscalls => Binding::Syscalls,
                },
            }),
            tracker: self.rules.tracker_config(true)?,
            listen: self.listen,
            events: self.events.clone(),
            client_id_labels: self.client_id_labels,
            keep_closed: self.keep_closed,
            backend: match packet {
                Some(BackendArg::Libpcap) => mqtt_keepalive::live::Backend::Libpcap,
                _ => mqtt_keepalive::live::Backend::AfPacket,
            },
            filter: self.filter.clone(),
            ring_size: self.ring_size,
            capture_threads: usize::from(self.capture_threads),
        })
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
    /// The session timeline as one self-contained HTML page.
    Html,
    /// The live agent's metrics over the capture, with timestamps (for promtool backfill).
    Openmetrics,
}

/// Options shared by every command that runs the analysis.
#[derive(clap::Args, Debug)]
pub struct RuleArgs {
    /// TCP port a broker listens on (repeatable): MQTT, MQTT over TLS or WebSocket; each
    /// connection's first bytes decide its transport.
    #[arg(short, long = "port", value_name = "PORT", default_values_t = DEFAULT_PORTS, value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// TLS secrets in the SSLKEYLOGFILE format (as Wireshark reads it), to decrypt MQTT over TLS;
    /// `live` follows the file as it grows.
    #[arg(long, value_name = "FILE")]
    pub tls_keylog: Option<PathBuf>,
    /// How long a PINGREQ may wait for its PINGRESP [default: the effective keepalive, 30s when unknown].
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub ping_timeout: Option<Duration>,
    /// How long after the deadline a broker close still counts as on time.
    #[arg(long, value_parser = duration, default_value = "1s", value_name = "DURATION")]
    pub enforcement_tolerance: Duration,
    /// Most TCP connections tracked at once; more are refused and counted.
    #[arg(long, default_value_t = 1 << 21, value_name = "N", value_parser = positive_count)]
    pub max_flows: usize,
    /// Most out-of-order bytes buffered per connection direction.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub max_buffered: usize,
    /// Most bytes held across all connections (out-of-order data and partial packets).
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_buffered_total: usize,
    /// An open connection with no packets for this long (and at least 3 keepalives) is evicted.
    #[arg(long, value_parser = positive_duration, default_value = "10m", value_name = "DURATION")]
    pub flow_timeout: Duration,
}

impl RuleArgs {
    /// The tracker settings these arguments describe, with the key log read (`follow`: a file
    /// that may not exist yet and will grow, for `live`).
    pub fn tracker_config(&self, follow: bool) -> Result<TrackerConfig, KeyLogError> {
        let keylog = match &self.tls_keylog {
            None => None,
            Some(p) if follow => Some(Arc::new(KeyLog::follow(p)?)),
            Some(p) => Some(Arc::new(KeyLog::open(p)?)),
        };
        Ok(TrackerConfig {
            layers: LayerConfig { keylog },
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
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, gzipped or not), read as one capture in the order of their
    /// first packets (with `-` or a pipe among them, in the order given); `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Progress bar on stderr for large files [default: when stderr is a terminal].
    #[arg(long)]
    pub no_progress: bool,
    /// Sessions listed in the text table and drawn in the timeline page, most severe first (0:
    /// all); the summary counts every session. Only the listed ones are held in memory.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub top: usize,
    /// Also write the session timeline as a self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// With `-f openmetrics`: one sample of every series per STEP of capture time, like a scrape.
    #[arg(long, value_parser = positive_duration, default_value = "15s", value_name = "STEP")]
    pub step: Duration,
    /// With `-f openmetrics`: the `instance` label [default: the first capture file's name].
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Text report: times in the local time zone (`TZ`, else the system's) instead of UTC.
    #[arg(long)]
    pub local: bool,
    /// Only sessions whose client id matches PATTERN, a glob: `*` any run of characters, `?` one
    /// (`sensor-*`, `dev-??`); sessions without a CONNECT match none. Text, json and jsonl.
    #[arg(long, value_name = "PATTERN")]
    pub client_id: Option<String>,
    /// Only sessions still going at TIME (jsonl: events at or after it). TIME is RFC 3339
    /// (`2026-11-26T12:00:00Z`, `2026-11-26T13:00:00+01:00`) or Unix seconds (`1795694400`).
    #[arg(long, value_parser = parse_instant, value_name = "TIME")]
    pub since: Option<Timestamp>,
    /// Only sessions begun by TIME (jsonl: events at or before it); TIME as for --since.
    #[arg(long, value_parser = parse_instant, value_name = "TIME")]
    pub until: Option<Timestamp>,
    /// Only session ID (its `id` in JSON, `session` in jsonl); the text report prints its full
    /// event timeline, pings included, before its row.
    #[arg(long, value_name = "ID")]
    pub session: Option<u64>,
    #[command(flatten)]
    pub rules: RuleArgs,
}

impl AnalyzeArgs {
    /// The options for `mqtt_keepalive::app::analyze`.
    pub fn options(&self) -> Result<AnalyzeOptions, KeyLogError> {
        Ok(AnalyzeOptions {
            files: self.files.clone(),
            tracker: self.rules.tracker_config(false)?,
            ports: self.rules.ports.clone(),
            progress: !self.no_progress,
        })
    }

    /// How the text report is shown.
    pub fn text_options(&self) -> TextOptions {
        let zone = if self.local { Zone::Local } else { Zone::Utc };
        TextOptions { zone, filter: self.filter().describe(zone) }
    }

    /// Which sessions and events are reported.
    pub fn filter(&self) -> SessionFilter {
        SessionFilter {
            client_id: self.client_id.as_deref().map(Glob::new),
            since: self.since,
            until: self.until,
            session: self.session,
        }
    }
}

/// Output formats of `probe`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFormat {
    /// The enforcement table.
    Text,
    /// One JSON document (versioned; see README).
    Json,
}

/// MQTT versions the probe speaks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolArg {
    #[value(name = "3.1.1")]
    V311,
    #[value(name = "5")]
    V5,
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Broker URL: mqtt://HOST[:PORT], mqtts://HOST[:PORT], ws://HOST[:PORT][/PATH] or wss://... (default path /mqtt).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ProbeFormat::Text)]
    pub format: ProbeFormat,
    /// MQTT version of the test clients.
    #[arg(long, value_enum, default_value_t = ProtocolArg::V311)]
    pub protocol: ProtocolArg,
    /// Keepalives of the silent-after-CONNECT scenarios, comma-separated (the median also runs
    /// ping-then-silent and pinging).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5,10", value_name = "SECONDS")]
    pub keepalives: Vec<u16>,
    /// Longest run [default: the largest deadline + tolerance + 10s]; a broker close after it counts as not enforced.
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub max_wait: Option<Duration>,
    /// How long after the deadline a broker close still counts as on time.
    #[arg(long, value_parser = duration, default_value = "1s", value_name = "DURATION")]
    pub enforcement_tolerance: Duration,
    /// User name for CONNECT.
    #[arg(long)]
    pub username: Option<String>,
    /// Password for CONNECT (visible in process lists: prefer --password-file).
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// File holding the password (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for mqtts/wss [default: the system's].
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Do not check the broker's certificate (mqtts/wss).
    #[arg(long)]
    pub insecure: bool,
    /// Client certificate (PEM) for mqtts/wss, with --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Wills go to PREFIX/<run id>/<scenario>.
    #[arg(long, default_value = "mqtt-keepalive/probe", value_name = "PREFIX")]
    pub topic_prefix: String,
    /// No progress line [default: shown when stderr is a terminal].
    #[arg(long)]
    pub no_progress: bool,
}

impl ProbeArgs {
    /// The options for `mqtt_keepalive::probe::run` (reads the password file).
    pub fn options(&self) -> Result<mqtt_keepalive::probe::ProbeOptions, mqtt_keepalive::probe::ProbeError> {
        use mqtt_keepalive::probe::{ProbeError, Secret};
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(Secret(p.clone().into_bytes())),
            (None, Some(path)) => {
                let mut bytes =
                    std::fs::read(path).map_err(|e| ProbeError::File { path: path.clone(), reason: e.to_string() })?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                Some(Secret(bytes))
            }
            (None, None) => None,
        };
        Ok(mqtt_keepalive::probe::ProbeOptions {
            target: mqtt_keepalive::probe::Target::parse(&self.url)?,
            version: match self.protocol {
                ProtocolArg::V311 => mqtt_keepalive::probe::client::Version::V311,
                ProtocolArg::V5 => mqtt_keepalive::probe::client::Version::V5,
            },
            keepalives: self.keepalives.clone(),
            max_wait: self.max_wait,
            enforcement_tolerance: self.enforcement_tolerance,
            username: self.username.clone(),
            password,
            tls: mqtt_keepalive::probe::client::TlsOptions {
                cafile: self.cafile.clone(),
                insecure: self.insecure,
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            topic_prefix: self.topic_prefix.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mqtt_keepalive::capture::ebpf::Binding;

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
        assert_eq!((l.client_id_labels, &l.backend[..]), (0, &[BackendArg::Afpacket][..]));
        assert_eq!((l.ring_size, l.capture_threads), (32 << 20, 1));
        assert!(parse(&["live", "-i", "lo", "--capture-threads", "0"]).is_err());
        let o = l.options().unwrap();
        assert!(o.packets && o.ebpf.is_none());
        assert_eq!(o.ports, [1883, 8883]);
    }

    #[test]
    fn ebpf_backends_and_their_ports() {
        let live = |args: &[&str]| match parse(args).unwrap().command {
            Command::Live(l) => l.options().unwrap(),
            _ => panic!(),
        };
        // eBPF alone watches the --port ports, needs no interface.
        let o = live(&["live", "--backend", "ebpf", "--port", "8883", "--process", "mosquitto"]);
        assert!(!o.packets && o.interfaces.is_empty());
        let e = o.ebpf.unwrap();
        assert_eq!((e.ports, e.process.as_deref(), e.binding), (vec![8883], Some("mosquitto"), Binding::Auto));
        // Beside packet capture it takes 8883 (or --ebpf-port), packet capture the rest.
        let o = live(&["live", "-i", "lo", "--backend", "afpacket,ebpf", "--pid", "7", "--pid", "9"]);
        let e = o.ebpf.unwrap();
        assert_eq!((o.packets, o.ports, e.ports, e.pids), (true, vec![1883], vec![8883], vec![7, 9]));
        let o = live(&[
            "live",
            "-i",
            "lo",
            "--backend",
            "ebpf,afpacket",
            "--ebpf-port",
            "9883",
            "--port",
            "1883",
            "--port",
            "9883",
        ]);
        assert_eq!((o.ports, o.ebpf.unwrap().ports), (vec![1883], vec![9883]));
        let o = live(&["live", "--backend", "ebpf", "--ebpf-binding", "syscalls"]);
        assert_eq!(o.ebpf.unwrap().binding, Binding::Syscalls);
        assert!(parse(&["live", "--backend", "ebpf,bogus"]).is_err());
        let Command::Live(l) = parse(&["live", "-i", "lo", "--backend", "afpacket,libpcap"]).unwrap().command else {
            panic!()
        };
        assert!(l.options().err().unwrap().to_string().contains("one packet capture backend"));
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
        assert_eq!(a.rules.ports, [1883, 8883]);
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
        let cfg = a.rules.tracker_config(false).unwrap();
        assert!(cfg.ports.contains(8883) && !cfg.ports.contains(80));
    }

    #[test]
    fn probe_defaults_and_options() {
        let Command::Probe(p) = parse(&["probe", "mqtt://h"]).unwrap().command else { panic!() };
        assert_eq!(p.keepalives, [1, 2, 3, 5, 10]);
        assert_eq!((p.format, p.protocol), (ProbeFormat::Text, ProtocolArg::V311));
        let Command::Probe(p) = parse(&[
            "probe",
            "ws://h:9001/x",
            "--keepalives",
            "2,4",
            "--protocol",
            "5",
            "-f",
            "json",
            "--max-wait",
            "9s",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let o = p.options().unwrap();
        assert_eq!((o.keepalives.as_slice(), o.max_wait), (&[2u16, 4][..], Some(Duration::from_secs(9))));
        assert_eq!(o.version, mqtt_keepalive::probe::client::Version::V5);
        assert!(parse(&["probe", "mqtt://h", "--password", "a", "--password-file", "f"]).is_err());
        assert!(parse(&["probe", "mqtt://h", "--cert", "c"]).is_err(), "--cert needs --key");
        assert!(parse(&["probe", "mqtt://h", "--keepalives", "x"]).is_err());
        assert!(parse(&["probe", "mqtt://h", "--protocol", "4"]).is_err());
    }

    #[test]
    fn arguments_that_make_no_sense_are_refused_with_what_is_accepted() {
        for (args, says) in [
            (&["analyze", "--ping-timeout", "0", "x"][..], "must be longer than 0"),
            (&["analyze", "--ping-timeout", "0s", "x"], "must be longer than 0"),
            (&["analyze", "--flow-timeout", "0", "x"], "must be longer than 0"),
            (&["analyze", "--port", "0", "x"], "0 is not in 1..=65535"),
            (&["analyze", "--max-flows", "0", "x"], "at least 1"),
            (&["analyze", "--step", "0ms", "x"], "must be longer than 0"),
            (&["analyze", "--ping-timeout", "soon", "x"], "500ms, 10s, 2m"),
            (&["analyze", "--enforcement-tolerance", "1 sec later", "x"], "500ms, 10s, 2m"),
            (&["live", "-i", "lo", "--port", "0"], "0 is not in 1..=65535"),
            (&["live", "-i", "lo", "--listen", "9883"], "use :PORT, HOST:PORT or IP:PORT"),
            (&["live", "-i", "lo", "--listen", "localhost:http-alt"], "use :PORT, HOST:PORT or IP:PORT"),
            (&["probe", "mqtt://h", "--max-wait", "0s"], "must be longer than 0"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} is refused")).to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        let Command::Analyze(a) = parse(&["analyze", "--enforcement-tolerance", "0s", "x"]).unwrap().command else {
            panic!()
        };
        assert_eq!(a.rules.enforcement_tolerance, Duration::ZERO, "a zero tolerance makes sense");
    }

    #[test]
    fn listen_accepts_a_bare_port_and_a_host_name() {
        let listen = |a: &str| {
            let Command::Live(l) = parse(&["live", "-i", "lo", "--listen", a]).unwrap().command else { panic!() };
            l.listen.to_string()
        };
        assert_eq!(listen(":9883"), "0.0.0.0:9883");
        assert_eq!(listen("localhost:9883"), "127.0.0.1:9883");
        assert_eq!(listen("[::1]:9883"), "[::1]:9883");
        assert_eq!(listen("127.0.0.1:1"), "127.0.0.1:1");
    }

    #[test]
    fn each_subcommand_help_has_examples_durations_and_exit_status() {
        for cmd in ["analyze", "live", "probe"] {
            let help = parse(&[cmd, "--help"]).unwrap_err().to_string();
            for part in ["Examples:", &format!("mqtt-keepalive {cmd} "), "500ms, 10s, 2m", "Exit status: 0"] {
                assert!(help.contains(part), "{cmd} --help lacks {part:?}: {help}");
            }
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse(&["analyze"]).is_err());
        assert!(parse(&["analyze", "--port", "70000", "x"]).is_err());
        assert!(parse(&["analyze", "--ping-timeout", "soon", "x"]).is_err());
    }
}
