//! The eBPF source: the MQTT plaintext inside TLS, read on the broker host as the broker reads
//! and writes it through OpenSSL's libssl, and every TCP open and close on the broker ports,
//! with no keys and no packet capture.
//!
//! Contract: [`EbpfSource::open`] checks the setup first (root or CAP_SYS_ADMIN + CAP_BPF +
//! CAP_PERFMON, a kernel with BTF and the tracepoints, the broker processes and the libssl they
//! map) and fails with an [`EbpfError`] that names what is missing. It then loads the BPF
//! program embedded in the binary (`ebpf/mqtt_keepalive.bpf.o`, compiled from the C beside it),
//! attaches an entry and a return uprobe on the function `SSL_read` and `SSL_read_ex` both
//! wrap and an entry uprobe on the one `SSL_write` and `SSL_write_ex` wrap (found in the code by
//! [`inner`]: a probe there costs the broker one trap, not two), or where they are not found
//! (or [`EXPORTED_PROBES_ENV`] is `1`) uprobes and uretprobes on `SSL_read` and `SSL_read_ex`
//! and uprobes only on `SSL_write` and `SSL_write_ex` (their data is all there at entry); and
//! uprobes on `SSL_shutdown` and `SSL_free`
//! in each libssl file (once per file, for every process mapping it; the kernel keeps only the
//! watched processes' calls when processes were named), and the tracepoints that tie an SSL
//! object to its socket and report TCP state changes and resets on the broker ports. The
//! connections already established on those ports are handed over first, as joined
//! mid-stream. [`EbpfSource::feed`] then hands the ring buffer's records to a pipeline in the
//! order things happened (a window of [`translate::REORDER_WINDOW`] puts them in the order of
//! their stamps, whatever CPU wrote them first: see [`translate`]); once a second it finds the named processes again (a restarted
//! broker has a new pid, an upgraded one may map a new libssl; system-wide, new libssl files
//! every ten seconds).
//! Ring-buffer records lost for want of room are counted as drops, like a capture's kernel
//! drops, and their bytes are gaps in their connections.

#![allow(unsafe_code)] // clock_gettime and setrlimit (the ring buffer is polled through capture::poll)

pub mod event;
pub mod inner;
pub mod sockets;
pub mod target;
pub mod translate;

use super::Intake;
use crate::capture::KernelStats;
use crate::time::Timestamp;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeScope};
use aya::programs::{TracePoint, UProbe};
use aya::{Ebpf, EbpfLoader};
use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;
use target::{Library, Proc, TargetError};
use translate::Translator;

/// The compiled BPF program (see `build.rs`: the committed object, or one rebuilt by clang).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("MQTT_KEEPALIVE_BPF_OBJECT"));

/// How an SSL call is tied to its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `sock:sock_recv_length` / `sock_send_length` where the kernel has them (Linux 6.3+),
    /// else the system-call tracepoints.
    Auto,
    /// `sock:sock_recv_length` / `sock:sock_send_length`.
    SockTracepoints,
    /// `syscalls:sys_enter_read/write/recvfrom/sendto`, the socket found from the fd.
    Syscalls,
}

/// What to watch.
#[derive(Clone, Debug)]
pub struct EbpfOptions {
    /// The broker's TLS ports (its sockets' local ports).
    pub ports: Vec<u16>,
    /// Broker processes by pid.
    pub pids: Vec<u32>,
    /// Broker processes by name (`/proc/PID/comm` or the executable's file name), found again
    /// once a second.
    pub process: Option<String>,
    pub binding: Binding,
}

/// Why the eBPF source cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("no libssl found on this host (searched the library directories and every process's mappings)")]
    NoLibssl,
    #[error("loading the BPF program failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the BPF program {program}: {source}")]
    Program { program: &'static str, source: aya::programs::ProgramError },
    #[error("the BPF map {map}: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
    #[error("the BPF map {0} is missing from the program")]
    MissingMap(&'static str),
    #[error("the BPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("cannot attach the uprobe {symbol} to {path}: {source}")]
    Attach { symbol: &'static str, path: String, source: aya::programs::ProgramError },
    #[error("waiting on the ring buffer: {0}")]
    Poll(std::io::Error),
    #[error(
        "this build embeds a BPF program compiled for {built}, not {running}: build with \
         `--features ebpf-rebuild` (needs clang and libbpf-dev) to compile it for this CPU"
    )]
    Arch { built: &'static str, running: &'static str },
}

impl EbpfError {
    /// True for errors of setup (exit status 2) rather than of running (1).
    pub fn is_setup(&self) -> bool {
        !matches!(self, EbpfError::Poll(_))
    }
}

/// The data uprobes: entry program, return program (the writes have their data at entry and
/// need none), symbol. Present in OpenSSL 1.1.1 and 3.x (the `_ex` forms since 1.1.1); a
/// symbol a library lacks is skipped.
const CALLS: [(&str, Option<&str>, &str); 4] = [
    ("ssl_read_enter", Some("ssl_read_exit"), "SSL_read"),
    ("ssl_write_enter", None, "SSL_write"),
    ("ssl_read_ex_enter", Some("ssl_read_ex_exit"), "SSL_read_ex"),
    ("ssl_write_ex_enter", None, "SSL_write_ex"),
];

/// Which inner function a program probes.
#[derive(Clone, Copy)]
enum InnerFn {
    Read,
    Write,
}

/// The data uprobes on the inner functions the exported ones wrap ([`inner`]): program, function
/// (the read's entry and return, the write's entry).
const INNER_CALLS: [(&str, InnerFn); 3] = [
    ("ssl_read_inner_enter", InnerFn::Read),
    ("ssl_read_inner_exit", InnerFn::Read),
    ("ssl_write_inner_enter", InnerFn::Write),
];

/// Set to `1`, the agent probes the exported SSL functions even where it finds the inner ones
/// (to compare their cost, and to test that path).
pub const EXPORTED_PROBES_ENV: &str = "MQTT_KEEPALIVE_EBPF_EXPORTED_PROBES";

/// The longest the ring buffer is left unread (data records do not wake the reader: a
/// wake-up per SSL call cost the broker more than the probes' own work).
pub const READ_INTERVAL: Duration = Duration::from_millis(20);

/// System-wide, the libssl files are looked for again every this many refreshes (seconds).
const SYSTEM_RESCAN: u64 = 10;

/// Entry-only uprobes: program, symbol.
const SINGLE_PROBES: [(&str, &str); 2] = [("ssl_shutdown", "SSL_shutdown"), ("ssl_free", "SSL_free")];

/// Tracepoints every setup needs: program, category, name.
const TCP_TRACEPOINTS: [(&str, &str, &str); 3] = [
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("tcp_receive_reset", "tcp", "tcp_receive_reset"),
    ("tcp_send_reset", "tcp", "tcp_send_reset"),
];
const SOCK_BINDING: [(&str, &str, &str); 2] =
    [("sock_recv_length", "sock", "sock_recv_length"), ("sock_send_length", "sock", "sock_send_length")];
const SYSCALL_BINDING: [(&str, &str, &str); 4] = [
    ("sys_enter_read", "syscalls", "sys_enter_read"),
    ("sys_enter_write", "syscalls", "sys_enter_write"),
    ("sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
];

/// Indexes of the program's `stats` array.
mod stat {
    pub const RING_DROPS: u32 = 0;
    pub const LOST_BYTES: u32 = 1;
    pub const UNBOUND: u32 = 2;
}

pub use crate::model::stats::EbpfStats;

/// The loaded, attached program and its ring buffer.
pub struct EbpfSource {
    bpf: Ebpf,
    ring: RingBuf<MapData>,
    opts: EbpfOptions,
    proc: Proc,
    /// Library files attached to, by (dev, ino).
    attached: HashSet<(u64, u64)>,
    /// The pids in the kernel's filter.
    pids: HashSet<u32>,
    translator: Translator,
    /// Connections established before the probes, handed over at the first feed.
    joined: Vec<crate::flow::FlowKey>,
    /// Real time just before the probes were attached: when the joined connections are
    /// handed over (before any record, which the window may hand over later than it came).
    attached_at: Timestamp,
    last_check: Option<Timestamp>,
    records: u64,
    /// Refreshes so far (one a second).
    refreshes: u64,
    bad_records: u64,
}

/// Real time minus monotonic time now, in nanoseconds (BPF stamps with the monotonic clock):
/// of a few readings of real time between two of monotonic time, the one read closest together
/// (a preemption between the reads would skew it).
fn read_clock(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The monotonic clock the BPF program stamps with, in nanoseconds.
fn monotonic_ns() -> u64 {
    u64::try_from(read_clock(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

fn clock_offset_ns() -> i64 {
    let read = read_clock;
    (0..5)
        .map(|_| {
            let before = read(libc::CLOCK_MONOTONIC);
            let real = read(libc::CLOCK_REALTIME);
            let after = read(libc::CLOCK_MONOTONIC);
            (after - before, real - (before + (after - before) / 2))
        })
        .min_by_key(|&(spread, _)| spread)
        .map_or(0, |(_, offset)| offset)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (the ring buffer alone is 8 MiB):
/// lift it, as bpftrace and libbpf tools do; later kernels ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `unlimited` is a valid rlimit for setrlimit to read.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("RLIMIT_MEMLOCK not raised: {}", std::io::Error::last_os_error());
    }
}

impl EbpfSource {
    /// Checks the setup, loads the program and attaches it (see the module's contract).
    pub fn open(opts: EbpfOptions) -> Result<Self, EbpfError> {
        let built = env!("MQTT_KEEPALIVE_BPF_ARCH");
        if built != std::env::consts::ARCH {
            return Err(EbpfError::Arch { built, running: std::env::consts::ARCH });
        }
        let proc = Proc::system();
        let missing = proc.missing_capabilities();
        if !missing.is_empty() {
            return Err(TargetError::NotRoot { missing }.into());
        }
        let check = |set: &[(&str, &str, &str)], mount_if_missing| {
            let tracepoints: Vec<(&str, &str)> = set.iter().map(|&(_, c, n)| (c, n)).collect();
            target::check_kernel(Path::new("/"), &tracepoints, mount_if_missing)
        };
        check(&TCP_TRACEPOINTS, true)?;
        let has = |set| check(set, false);
        let binding = match opts.binding {
            Binding::Auto if has(&SOCK_BINDING).is_ok() => Binding::SockTracepoints,
            Binding::Auto => Binding::Syscalls,
            b => b,
        };
        match binding {
            Binding::SockTracepoints => has(&SOCK_BINDING)?,
            _ => has(&SYSCALL_BINDING)?,
        }

        raise_memlock_limit();
        let (pids, libraries) = resolve(&proc, &opts)?;
        // Keep only the named processes' calls in the kernel (none named: every process's).
        let filter_flag = u8::from(!opts.pids.is_empty() || opts.process.is_some());
        let mut bpf = EbpfLoader::new().override_global("FILTER_PIDS", &filter_flag, true).load(BPF_OBJECT)?;
        {
            let map = bpf.map_mut("ports").ok_or(EbpfError::MissingMap("ports"))?;
            let mut ports: BpfHashMap<_, u16, u8> =
                BpfHashMap::try_from(map).map_err(|source| EbpfError::Map { map: "ports", source })?;
            for &p in &opts.ports {
                ports.insert(p, 1, 0).map_err(|source| EbpfError::Map { map: "ports", source })?;
            }
        }
        let offset = clock_offset_ns();
        let attached_at = Timestamp::from_nanos((monotonic_ns() as i64).saturating_add(offset));
        for (program, category, name) in TCP_TRACEPOINTS.iter().chain(if binding == Binding::SockTracepoints {
            &SOCK_BINDING[..]
        } else {
            &SYSCALL_BINDING[..]
        }) {
            let tp: &mut TracePoint = program_mut(&mut bpf, program)?;
            tp.load().map_err(|source| EbpfError::Program { program, source })?;
            tp.attach(category, name).map_err(|source| EbpfError::Program { program, source })?;
        }
        let uprobes = CALLS.iter().flat_map(|&(enter, exit, _)| std::iter::once(enter).chain(exit));
        let inner = INNER_CALLS.iter().map(|&(program, _)| program);
        for program in uprobes.chain(inner).chain(SINGLE_PROBES.iter().map(|&(program, _)| program)) {
            let p: &mut UProbe = program_mut(&mut bpf, program)?;
            p.load().map_err(|source| EbpfError::Program { program, source })?;
        }

        let ring = bpf.take_map("events").ok_or(EbpfError::MissingMap("events"))?;
        let ring = RingBuf::try_from(ring).map_err(|source| EbpfError::Map { map: "events", source })?;
        let mut source = EbpfSource {
            bpf,
            ring,
            opts,
            proc,
            attached: HashSet::new(),
            pids: HashSet::new(),
            translator: Translator::new(offset),
            joined: Vec::new(),
            attached_at,
            last_check: None,
            records: 0,
            refreshes: 0,
            bad_records: 0,
        };
        source.set_pids(&pids)?;
        for lib in &libraries {
            source.attach(lib)?;
        }
        // After the probes: a connection opened in between is in both, and joined once.
        source.joined = sockets::established(Path::new("/proc/net"), &source.opts.ports);
        tracing::info!(
            binding = ?binding,
            libraries = ?libraries.iter().map(|l| l.path.display().to_string()).collect::<Vec<_>>(),
            pids = ?pids,
            joined = source.joined.len(),
            "eBPF probes attached"
        );
        Ok(source)
    }

    /// Attaches the uprobes to one libssl file (once per file): on the inner read and write
    /// functions where its code shows them ([`inner`]), else on the exported functions.
    fn attach(&mut self, lib: &Library) -> Result<(), EbpfError> {
        if !self.attached.insert((lib.dev, lib.ino)) {
            return Ok(());
        }
        let path = lib.path.display().to_string();
        let found =
            if std::env::var_os(EXPORTED_PROBES_ENV).is_some_and(|v| v == "1") { None } else { inner::find(&lib.path) };
        if let Some(found) = found {
            tracing::info!(library = %path, read = found.read, write = found.write, "probing libssl's inner read and write functions");
            for (program, which) in INNER_CALLS {
                let offset = match which {
                    InnerFn::Read => found.read,
                    InnerFn::Write => found.write,
                };
                let p: &mut UProbe = program_mut(&mut self.bpf, program)?;
                p.attach(UProbeAttachLocation::AbsoluteOffset(offset), &lib.path, UProbeScope::AllProcesses)
                    .map_err(|source| EbpfError::Attach { symbol: program, path: path.clone(), source })?;
            }
        } else {
            tracing::info!(library = %path, "probing libssl's exported SSL_read, SSL_write and their _ex forms");
            self.attach_exported(lib, &path)?;
        }
        for (program, symbol) in SINGLE_PROBES {
            let p: &mut UProbe = program_mut(&mut self.bpf, program)?;
            p.attach(symbol, &lib.path, UProbeScope::AllProcesses).map_err(|source| EbpfError::Attach {
                symbol,
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The data probes on the exported functions (entry and return for the reads).
    fn attach_exported(&mut self, lib: &Library, path: &str) -> Result<(), EbpfError> {
        let path = path.to_string();
        for (enter, exit, symbol) in CALLS {
            for program in std::iter::once(enter).chain(exit) {
                let p: &mut UProbe = program_mut(&mut self.bpf, program)?;
                match p.attach(symbol, &lib.path, UProbeScope::AllProcesses) {
                    Ok(_) => {}
                    // OpenSSL before 1.1.1 has no _ex forms.
                    Err(e) if symbol.ends_with("_ex") => {
                        tracing::debug!("{path}: no {symbol} ({e})");
                        break;
                    }
                    Err(source) => return Err(EbpfError::Attach { symbol, path, source }),
                }
            }
        }
        Ok(())
    }

    /// Puts exactly `pids` in the kernel's filter.
    fn set_pids(&mut self, pids: &[u32]) -> Result<(), EbpfError> {
        let map = self.bpf.map_mut("pids").ok_or(EbpfError::MissingMap("pids"))?;
        let mut map: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|source| EbpfError::Map { map: "pids", source })?;
        let now: HashSet<u32> = pids.iter().copied().collect();
        for gone in self.pids.difference(&now) {
            let _ = map.remove(gone);
        }
        for new in now.difference(&self.pids) {
            map.insert(*new, 1, 0).map_err(|source| EbpfError::Map { map: "pids", source })?;
        }
        self.pids = now;
        Ok(())
    }

    /// Finds the named processes again: new pids join the filter (their libssl attached if it
    /// is a new file), gone ones leave it. A broker that is down is not an error: the agent
    /// waits for it.
    fn refresh(&mut self) {
        self.translator.set_offset(clock_offset_ns());
        self.refreshes += 1;
        if self.opts.process.is_none() && self.opts.pids.is_empty() && self.refreshes.is_multiple_of(SYSTEM_RESCAN) {
            // System-wide: a libssl file new since the start (a broker started in a container).
            for lib in self.proc.system_libraries() {
                if let Err(e) = self.attach(&lib) {
                    tracing::warn!("{e}");
                }
            }
        }
        if self.opts.process.is_none() {
            return;
        }
        let Ok((pids, libraries)) = resolve(&self.proc, &self.opts) else {
            return;
        };
        let new: Vec<u32> = pids.iter().filter(|p| !self.pids.contains(p)).copied().collect();
        if !new.is_empty() {
            tracing::info!(pids = ?new, "broker process found");
        }
        for lib in &libraries {
            if let Err(e) = self.attach(lib) {
                tracing::warn!("{e}");
            }
        }
        if let Err(e) = self.set_pids(&pids) {
            tracing::warn!("{e}");
        }
    }

    /// Hands the records that arrived to `pipeline`, waiting at most `timeout` for the first;
    /// at most `max` records; returns how many. `now` is the loop's real time.
    pub fn feed(
        &mut self,
        pipeline: &mut dyn Intake,
        timeout: Duration,
        now: Timestamp,
        max: usize,
    ) -> Result<usize, EbpfError> {
        for key in self.joined.drain(..) {
            self.translator.joined(self.attached_at, key, pipeline);
        }
        if self.last_check.is_none_or(|t| now.since(t) >= Duration::from_secs(1)) {
            self.last_check = Some(now);
            self.refresh();
        }
        let mut n = self.drain(pipeline, max);
        self.translator.release_due(now, pipeline);
        // Data records do not wake this thread (see the BPF program): it looks at least this
        // often, well within the tracker's grace behind the clock.
        let timeout = timeout.min(READ_INTERVAL);
        if n == 0 && !timeout.is_zero() {
            let mut fd = [libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            super::poll::wait(&mut fd, timeout).map_err(EbpfError::Poll)?;
            n = self.drain(pipeline, max);
        }
        Ok(n)
    }

    /// Takes every record already in the ring buffer (no system call) and hands to `pipeline`
    /// those out of the reorder window.
    pub fn take_held(&mut self, pipeline: &mut dyn Intake) {
        self.drain(pipeline, usize::MAX);
    }

    /// Hands every record taken so far to `pipeline`, the reorder window's too (at the end).
    pub fn flush(&mut self, pipeline: &mut dyn Intake) {
        self.drain(pipeline, usize::MAX);
        self.translator.flush(pipeline);
    }

    /// Takes at most `max` records from the ring buffer into the reorder window, then hands
    /// over those stamped before the window; returns how many were taken.
    fn drain(&mut self, pipeline: &mut dyn Intake, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.ring.next() else { break };
            if let Err(e) = self.translator.push(&item) {
                self.bad_records += 1;
                tracing::debug!("{e}");
            }
            n += 1;
        }
        self.records += n as u64;
        let upto = monotonic_ns().saturating_sub(translate::REORDER_WINDOW.as_nanos() as u64);
        self.translator.release(upto, pipeline);
        n
    }

    /// The kernel's counts so far.
    pub fn ebpf_stats(&self) -> EbpfStats {
        let stats = self.bpf.map("stats").and_then(|map| PerCpuArray::<_, u64>::try_from(map).ok());
        let read = |i: u32| -> u64 {
            stats.as_ref().and_then(|arr| arr.get(&i, 0).ok()).map_or(0, |per_cpu| per_cpu.iter().sum())
        };
        EbpfStats {
            records: self.records,
            ring_drops: read(stat::RING_DROPS),
            lost_bytes: read(stat::LOST_BYTES),
            unbound_calls: read(stat::UNBOUND),
            bad_records: self.bad_records,
        }
    }

    /// The counts a capture reports: ring-buffer drops as kernel drops.
    pub fn stats(&mut self) -> KernelStats {
        KernelStats { dropped: self.ebpf_stats().ring_drops, ..KernelStats::default() }
    }
}

fn program_mut<'a, T>(bpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = bpf.program_mut(name).ok_or(EbpfError::MissingProgram(name))?;
    p.try_into().map_err(|source| EbpfError::Program { program: name, source })
}

/// The pids to watch and the libssl files to attach to: the named processes' (an error if one
/// is gone or maps no libssl), or with none named every libssl on the host.
fn resolve(proc: &Proc, opts: &EbpfOptions) -> Result<(Vec<u32>, Vec<Library>), EbpfError> {
    let mut pids = opts.pids.clone();
    if let Some(name) = &opts.process {
        let found = proc.pids_named(name);
        if found.is_empty() {
            return Err(TargetError::NoProcessNamed { name: name.clone() }.into());
        }
        pids.extend(found);
    }
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty() {
        let libs = proc.system_libraries();
        if libs.is_empty() {
            return Err(EbpfError::NoLibssl);
        }
        return Ok((pids, libs));
    }
    let mut libs: Vec<Library> = Vec::new();
    for &pid in &pids {
        for lib in proc.ssl_libraries(pid)? {
            if !libs.iter().any(|l| (l.dev, l.ino) == (lib.dev, lib.ino)) {
                libs.push(lib);
            }
        }
    }
    Ok((pids, libs))
}
