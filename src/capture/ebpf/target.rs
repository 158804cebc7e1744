//! Targets of the eBPF backend: which processes and which libssl files it attaches to, and whether
//! this machine can run it at all.
//!
//! Contract: everything is read from `/proc` and `/sys` under an injectable root directory (`/` in
//! production, a fake tree in tests), and nothing here panics on odd input: unreadable files,
//! malformed `/proc/PID/maps` lines and processes that exit mid-scan are skipped, not errors.
//!
//! - [`Proc::pids_named`] finds the broker by `/proc/PID/comm` or by its executable's file name.
//! - [`Proc::ssl_libraries`] lists the OpenSSL `libssl` files one process maps, each once, by a path
//!   the agent can open from its own mount namespace: `/proc/PID/root/<path>` (so a broker in a
//!   container works), or `/proc/PID/map_files/<start>-<end>` for a library deleted since it was
//!   mapped (upgraded under a running broker). [`Library`] carries `(dev, ino)`: uprobes attach to
//!   an inode, so one file seen through several paths is attached once.
//! - [`Proc::system_libraries`] does the same for every process plus the usual library directories.
//! - [`Proc::missing_capabilities`] and [`check_kernel`] are the setup checks, each failure a
//!   [`TargetError`] that says what is missing and what to do.
//!
//! Only OpenSSL's `libssl` counts (`libssl.so`, `libssl.so.3`, `libssl.so.1.1`, and vendored copies
//! like `libssl-8e6f7b43.so.3` in Python wheels). Mozilla NSS's `libssl3.so` is deliberately left
//! out: it has none of OpenSSL's `SSL_read`/`SSL_write` symbols, so uprobes on it cannot attach.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A libssl file to attach uprobes to, as the agent can open it, identified by (dev, ino) so a
/// library shared by many processes (or seen through several paths) is attached once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// Why the eBPF backend cannot find its targets or cannot run on this machine.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no process {pid} (is the broker running?)")]
    NoSuchProcess { pid: u32 },
    #[error(
        "no running process named {name} (is the broker running? --process matches /proc/PID/comm or the executable's file name)"
    )]
    NoProcessNamed { name: String },
    #[error(
        "process {pid} ({comm}) does not map libssl: its TLS is not visible to the eBPF backend. \
         Covered: brokers and TLS proxies linking OpenSSL's libssl dynamically (mosquitto, HAProxy, nginx stream); \
         not covered: Erlang brokers (EMQX, VerneMQ, RabbitMQ), Java brokers (HiveMQ, ActiveMQ Artemis), \
         Go or rustls binaries and statically linked OpenSSL/BoringSSL; for those, run without --pid/--process: the TCP tracepoints still report every connection's open and close on the port"
    )]
    NoLibssl { pid: u32, comm: String },
    #[error("cannot read {path}: {source}")]
    Proc { path: PathBuf, source: io::Error },
    #[error(
        "the eBPF backend needs root or the capabilities CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON together (missing: {})",
        missing.join(", ")
    )]
    NotRoot { missing: Vec<&'static str> },
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted (no events directory in {} or {}); mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
        tried[0].display(), tried[1].display()
    )]
    NoTracefs { tried: [PathBuf; 2] },
    #[error("this kernel has no tracepoint {name} (tracefs: {tracefs})")]
    NoTracepoint { name: String, tracefs: PathBuf },
    #[error("cannot mount tracefs at {path}: {source}")]
    Tracefs { path: PathBuf, source: io::Error },
}

/// Capabilities the backend needs, with their numbers (linux/capability.h).
const NEEDED_CAPS: [(&str, u32); 3] = [("CAP_SYS_ADMIN", 21), ("CAP_BPF", 39), ("CAP_PERFMON", 38)];

/// Library directories searched by [`Proc::system_libraries`], relative to the root. `/usr` first:
/// on merged-usr systems `/lib` is a link to `/usr/lib`, and the first path seen for a file wins.
const LIBRARY_DIRS: [&str; 4] = ["usr/lib", "usr/lib64", "lib", "lib64"];

/// The kernel's marker after the path of a mapped file that has been deleted (or replaced).
const DELETED: &[u8] = b" (deleted)";

/// A view of `/proc` (and the files processes map) under a root directory.
#[derive(Clone, Debug)]
pub struct Proc {
    root: PathBuf,
}

impl Proc {
    /// A view rooted at `root`: `/` in production, a fake tree in tests.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The running system's `/proc`.
    pub fn system() -> Self {
        Self::new("/")
    }

    /// Pids whose /proc/PID/comm equals `name`, or whose /proc/PID/exe link's file name equals
    /// `name` (comm is truncated to 15 bytes), sorted; threads are not processes (only numeric
    /// dirs of /proc).
    pub fn pids_named(&self, name: &str) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .pids()
            .into_iter()
            .filter(|&pid| {
                self.comm(pid).is_some_and(|comm| comm == name)
                    || self.exe_file_name(pid).is_some_and(|exe| exe == name.as_bytes())
            })
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Whether process (or thread) `pid` exists now.
    pub fn exists(&self, pid: u32) -> bool {
        self.pid_dir(pid).is_dir()
    }

    /// The command name of `pid` (`/proc/PID/comm`, at most 15 bytes), `None` if it is gone.
    pub fn comm(&self, pid: u32) -> Option<String> {
        let bytes = fs::read(self.pid_dir(pid).join("comm")).ok()?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The libssl files `pid` maps (lines of /proc/PID/maps whose path's file name is an OpenSSL
    /// libssl shared object, see [`is_libssl`]; not libssl's siblings like libcrypto), each once,
    /// opened through /proc/PID/root/<path> (containers), or through
    /// /proc/PID/map_files/<start>-<end> when the path is marked " (deleted)" (a library upgraded
    /// under a running broker); dev/ino from metadata of the path chosen, in the order of the maps.
    /// Err(NoLibssl) when none, Err(NoSuchProcess) when the process is gone, Err(Proc) when libssl
    /// is mapped but none of its paths can be opened (permissions).
    pub fn ssl_libraries(&self, pid: u32) -> Result<Vec<Library>, TargetError> {
        let pid_dir = self.pid_dir(pid);
        let maps_path = pid_dir.join("maps");
        let maps = match fs::read(&maps_path) {
            Ok(maps) => maps,
            Err(e) if e.kind() == io::ErrorKind::NotFound || !self.exists(pid) => {
                return Err(TargetError::NoSuchProcess { pid });
            }
            Err(source) => return Err(TargetError::Proc { path: maps_path, source }),
        };

        let mut libraries = Vec::new();
        let mut seen_paths: HashSet<&[u8]> = HashSet::new();
        let mut last_error = None;
        for entry in maps.split(|&b| b == b'\n').filter_map(MapsEntry::parse) {
            if !is_libssl(entry.file_name()) {
                continue;
            }
            let path = if entry.deleted {
                // Each mapping has its own map_files link; they all lead to the same inode.
                pid_dir.join("map_files").join(OsStr::from_bytes(entry.range))
            } else {
                // Later mappings of a path already seen are the same file.
                if !seen_paths.insert(entry.path) {
                    continue;
                }
                pid_dir.join("root").join(OsStr::from_bytes(&entry.path[1..]))
            };
            match fs::metadata(&path) {
                Ok(meta) => push_unique(&mut libraries, Library { path, dev: meta.dev(), ino: meta.ino() }),
                Err(source) => last_error = Some(TargetError::Proc { path, source }),
            }
        }

        if !libraries.is_empty() {
            return Ok(libraries);
        }
        if !self.exists(pid) {
            return Err(TargetError::NoSuchProcess { pid });
        }
        match last_error {
            Some(error) => Err(error),
            None => Err(TargetError::NoLibssl { pid, comm: self.comm(pid).unwrap_or_else(|| "?".into()) }),
        }
    }

    /// For system-wide mode: the `libssl.so*` files in the usual library directories (/usr/lib,
    /// /usr/lib64, /lib, /lib64, and their multiarch subdirectories like x86_64-linux-gnu,
    /// aarch64-linux-gnu), then every libssl file mapped by any process now (containers, deleted
    /// libraries, vendored copies), deduplicated by (dev, ino): the first path seen for a file is
    /// kept. Regular files only (symlinks followed, then deduplicated). Never fails: what cannot be
    /// read is skipped.
    pub fn system_libraries(&self) -> Vec<Library> {
        let mut libraries = Vec::new();
        for dir in LIBRARY_DIRS {
            let dir = self.root.join(dir);
            let mut dirs = vec![dir.clone()];
            dirs.extend(
                sorted_entries(&dir)
                    .into_iter()
                    .filter(|(name, path)| name.as_bytes().windows(7).any(|w| w == b"-linux-") && path.is_dir())
                    .map(|(_, path)| path),
            );
            for dir in dirs {
                let mut candidates: Vec<PathBuf> = sorted_entries(&dir)
                    .into_iter()
                    .filter(|(name, _)| name.as_bytes().starts_with(b"libssl.so"))
                    .map(|(_, path)| path)
                    .collect();
                // Files before links to them: `libssl.so.3` names the file better than `libssl.so`.
                candidates.sort_by_key(|path| fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()));
                for path in candidates {
                    // `metadata` follows symlinks, then (dev, ino) deduplicates.
                    if let Ok(meta) = fs::metadata(&path)
                        && meta.is_file()
                    {
                        push_unique(&mut libraries, Library { path, dev: meta.dev(), ino: meta.ino() });
                    }
                }
            }
        }
        for pid in self.pids() {
            for library in self.ssl_libraries(pid).unwrap_or_default() {
                push_unique(&mut libraries, library);
            }
        }
        libraries
    }

    /// Effective capabilities missing from the set the backend needs (CAP_SYS_ADMIN=21,
    /// CAP_BPF=39, CAP_PERFMON=38), read from /proc/self/status CapEff (hex). Names like
    /// "CAP_SYS_ADMIN". A kernel older than 5.8 has no CAP_BPF or CAP_PERFMON
    /// (/proc/sys/kernel/cap_last_cap below them) and lets CAP_SYS_ADMIN do their work, so they are
    /// not counted missing there. An unreadable or unparsable status counts as no capabilities.
    pub fn missing_capabilities(&self) -> Vec<&'static str> {
        let status = fs::read(self.root.join("proc/self/status")).unwrap_or_default();
        let effective = parse_cap_eff(&status).unwrap_or(0);
        let last_cap = fs::read_to_string(self.root.join("proc/sys/kernel/cap_last_cap"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(u32::MAX);
        NEEDED_CAPS
            .iter()
            .filter(|&&(_, bit)| bit <= last_cap && effective & (1 << bit) == 0)
            .map(|&(name, _)| name)
            .collect()
    }

    /// The numeric entries of `/proc`: processes (threads are hidden in `/proc/PID/task`).
    fn pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.root.join("proc")) else { return Vec::new() };
        entries.filter_map(|entry| parse_pid(&entry.ok()?.file_name())).collect()
    }

    fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join("proc").join(pid.to_string())
    }

    /// The file name of `pid`'s executable, without the kernel's " (deleted)" marker (a broker
    /// still running after its package was upgraded). `None` if unreadable (gone, not permitted).
    fn exe_file_name(&self, pid: u32) -> Option<Vec<u8>> {
        let target = fs::read_link(self.pid_dir(pid).join("exe")).ok()?;
        let target = target.as_os_str().as_bytes();
        let target = target.strip_suffix(DELETED).unwrap_or(target);
        Path::new(OsStr::from_bytes(target)).file_name().map(|name| name.as_bytes().to_vec())
    }
}

/// Checks the kernel has what the backend needs: BTF at <root>/sys/kernel/btf/vmlinux, and tracefs
/// with the given tracepoints (dirs <tracefs>/events/<category>/<name>); tracefs is looked for at
/// /sys/kernel/tracing then /sys/kernel/debug/tracing; when neither has an `events` dir and
/// `mount_if_missing`, mounts tracefs at <root>/sys/kernel/tracing by running
/// `mount -t tracefs nodev <dir>` (Err(Tracefs) if that fails), else Err(NoTracefs).
pub fn check_kernel(root: &Path, tracepoints: &[(&str, &str)], mount_if_missing: bool) -> Result<(), TargetError> {
    if !root.join("sys/kernel/btf/vmlinux").exists() {
        return Err(TargetError::NoBtf);
    }

    let tried = [root.join("sys/kernel/tracing"), root.join("sys/kernel/debug/tracing")];
    let mut tracefs = None;
    for dir in &tried {
        if has_events(dir)? {
            tracefs = Some(dir.clone());
            break;
        }
    }
    let tracefs = match tracefs {
        Some(dir) => dir,
        None if mount_if_missing => {
            let dir = tried[0].clone();
            mount_tracefs(&dir)?;
            if !has_events(&dir)? {
                let source = io::Error::other("mounted, but it has no events directory");
                return Err(TargetError::Tracefs { path: dir, source });
            }
            dir
        }
        None => return Err(TargetError::NoTracefs { tried }),
    };

    for (category, name) in tracepoints {
        if !tracefs.join("events").join(category).join(name).is_dir() {
            return Err(TargetError::NoTracepoint { name: format!("{category}/{name}"), tracefs });
        }
    }
    Ok(())
}

/// Whether `tracefs/events` is a directory; a permission error is reported, not taken for "no".
fn has_events(tracefs: &Path) -> Result<bool, TargetError> {
    let events = tracefs.join("events");
    match fs::metadata(&events) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(false),
        Err(source) => Err(TargetError::Proc { path: events, source }),
    }
}

/// Runs `mount -t tracefs nodev <dir>` (the command, so no unsafe and no libc call here).
fn mount_tracefs(dir: &Path) -> Result<(), TargetError> {
    let fail = |source| TargetError::Tracefs { path: dir.to_path_buf(), source };
    let output = Command::new("mount").args(["-t", "tracefs", "nodev"]).arg(dir).output().map_err(fail)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(fail(io::Error::other(format!("mount exited with {}: {}", output.status, stderr.trim()))))
}

/// Whether a mapped file's name is OpenSSL's libssl: `libssl` followed by nothing, a version digit
/// or `-` (vendored copies like `libssl-8e6f7b43.so.3`) before `.so`, and `.so` ends the name or
/// is followed by `.` (`libssl.so.3`). Not `libcrypto.so.3`, not `libssl_helper.so`, and not NSS's
/// `libssl3.so`, which has no OpenSSL symbols.
pub fn is_libssl(file_name: &[u8]) -> bool {
    let Some(rest) = file_name.strip_prefix(b"libssl") else { return false };
    if rest.starts_with(b".so") {
        return matches!(rest.get(3), None | Some(b'.'));
    }
    // Only vendored copies carry something between `libssl` and `.so`; NSS's `libssl3.so` is excluded.
    let Some(vendored) = rest.strip_prefix(b"-") else { return false };
    vendored.windows(3).enumerate().any(|(i, w)| w == b".so" && matches!(vendored.get(i + 3), None | Some(b'.')))
}

/// One file-backed line of `/proc/PID/maps`:
/// `7f1c2a000000-7f1c2a020000 r-xp 00000000 fd:01 1234  /usr/lib/libssl.so.3 (deleted)`.
#[derive(Debug, PartialEq, Eq)]
struct MapsEntry<'a> {
    /// `start-end` in hex, as named in `/proc/PID/map_files`.
    range: &'a [u8],
    /// Absolute path in the process's mount namespace, without the " (deleted)" marker.
    path: &'a [u8],
    deleted: bool,
}

impl<'a> MapsEntry<'a> {
    /// The entry of a maps line, `None` for anonymous or pseudo mappings (`[heap]`) and for lines
    /// that do not have the six fields. The path is the rest of the line after five fields and
    /// their padding, so paths with spaces survive.
    fn parse(line: &'a [u8]) -> Option<Self> {
        let (range, rest) = next_field(line)?;
        let (_perms, rest) = next_field(rest)?;
        let (_offset, rest) = next_field(rest)?;
        let (_dev, rest) = next_field(rest)?;
        let (inode, rest) = next_field(rest)?;
        let path = trim_start(rest);
        let mut bounds = range.split(|&b| b == b'-');
        let hex = |n: Option<&[u8]>| n.is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_hexdigit));
        if !(hex(bounds.next()) && hex(bounds.next()) && bounds.next().is_none()) {
            return None;
        }
        if inode == b"0" || !path.starts_with(b"/") {
            return None;
        }
        let (path, deleted) = match path.strip_suffix(DELETED) {
            Some(path) => (path, true),
            None => (path, false),
        };
        Some(Self { range, path, deleted })
    }

    fn file_name(&self) -> &'a [u8] {
        self.path.rsplit(|&b| b == b'/').next().unwrap_or(self.path)
    }
}

/// The first space-separated field of `s` and what follows it, `None` if there is none.
fn next_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim_start(s);
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(s.len());
    Some(s.split_at(end))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    &s[start..]
}

/// The `CapEff:` value of a `/proc/PID/status` file (a 64-bit mask in hex).
fn parse_cap_eff(status: &[u8]) -> Option<u64> {
    let line = status.split(|&b| b == b'\n').find_map(|line| line.strip_prefix(b"CapEff:"))?;
    u64::from_str_radix(std::str::from_utf8(line).ok()?.trim(), 16).ok()
}

/// A process id from a `/proc` entry name: all ASCII digits (not `self`, `net`, ...).
fn parse_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The entries of `dir` as (file name, path), sorted by name; empty if unreadable.
fn sorted_entries(dir: &Path) -> Vec<(std::ffi::OsString, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| (e.file_name(), e.path())).collect();
    entries.sort();
    entries
}

/// Adds `library` unless a library with the same (dev, ino) is there already.
fn push_unique(libraries: &mut Vec<Library>, library: Library) {
    if !libraries.iter().any(|l| (l.dev, l.ino) == (library.dev, library.ino)) {
        libraries.push(library);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake root directory with `/proc`, `/sys` and library trees, removed when dropped.
    struct FakeRoot {
        dir: PathBuf,
    }

    impl FakeRoot {
        fn new(test: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("mqtt-keepalive-target-{}-{test}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("proc")).unwrap();
            Self { dir }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.dir.join(relative)
        }

        /// Writes `contents` at `relative`, creating the parent directories.
        fn file(&self, relative: &str, contents: &str) -> PathBuf {
            let path = self.path(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, contents).unwrap();
            path
        }

        fn symlink(&self, relative: &str, target: impl AsRef<Path>) {
            let path = self.path(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
        }

        /// A process in the host's mount namespace: `/proc/PID/root` leads to the fake root.
        fn process(&self, pid: u32, comm: &str, exe: &str, maps: &str) {
            self.file(&format!("proc/{pid}/comm"), &format!("{comm}\n"));
            self.file(&format!("proc/{pid}/maps"), maps);
            self.symlink(&format!("proc/{pid}/exe"), exe);
            self.symlink(&format!("proc/{pid}/root"), &self.dir);
        }

        fn proc(&self) -> Proc {
            Proc::new(&self.dir)
        }

        fn library(&self, path: PathBuf) -> Library {
            let meta = fs::metadata(&path).unwrap();
            Library { path, dev: meta.dev(), ino: meta.ino() }
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    const LIBSSL: &str = "usr/lib/x86_64-linux-gnu/libssl.so.3";
    const LIBCRYPTO: &str = "usr/lib/x86_64-linux-gnu/libcrypto.so.3";

    /// Maps of a mosquitto linking libssl and libcrypto, each mapped several times.
    const MOSQUITTO_MAPS: &str = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 fd:01 100 /usr/sbin/mosquitto
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
7f1c29000000-7f1c29100000 r--p 00000000 fd:01 201                        /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2a000000-7f1c2a020000 r--p 00000000 fd:01 200                        /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a020000-7f1c2a080000 r-xp 00020000 fd:01 200                        /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a080000-7f1c2a090000 rw-p 00080000 fd:01 200                        /usr/lib/x86_64-linux-gnu/libssl.so.3
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn pids_named_matches_comm_sorted_and_skips_non_processes() {
        let root = FakeRoot::new("comm");
        root.process(42, "mosquitto", "/usr/sbin/mosquitto", "");
        root.process(7, "mosquitto", "/usr/sbin/mosquitto", "");
        root.process(8, "sshd", "/usr/sbin/sshd", "");
        root.file("proc/self/comm", "mosquitto\n"); // not a pid
        root.file("proc/net/comm", "mosquitto\n");
        root.file("proc/99/maps", ""); // vanished before its comm was read
        assert_eq!(root.proc().pids_named("mosquitto"), [7, 42]);
        assert_eq!(root.proc().pids_named("mosq"), Vec::<u32>::new());
        assert!(root.proc().exists(8));
        assert!(!root.proc().exists(9));
        assert_eq!(root.proc().comm(8).as_deref(), Some("sshd"));
        assert_eq!(root.proc().comm(9), None);
    }

    #[test]
    fn pids_named_matches_a_long_name_by_the_executable() {
        let root = FakeRoot::new("exe");
        // comm keeps the first 15 bytes of "mosquitto-cluster-node"
        root.process(300, "mosquitto-clust", "/opt/broker/bin/mosquitto-cluster-node", "");
        root.process(301, "mosquitto-clust", "/opt/broker/bin/mosquitto-cluster-node (deleted)", "");
        assert_eq!(root.proc().pids_named("mosquitto-cluster-node"), [300, 301]);
        assert_eq!(root.proc().pids_named("mosquitto-clust"), [300, 301]);
        assert_eq!(root.proc().pids_named("bin"), Vec::<u32>::new());
    }

    #[test]
    fn ssl_libraries_lists_libssl_once_and_not_libcrypto() {
        let root = FakeRoot::new("maps");
        let libssl = root.file(LIBSSL, "ssl");
        root.file(LIBCRYPTO, "crypto");
        root.process(100, "mosquitto", "/usr/sbin/mosquitto", MOSQUITTO_MAPS);
        let libraries = root.proc().ssl_libraries(100).unwrap();
        let via_proc = root.path("proc/100/root").join(LIBSSL);
        assert_eq!(libraries, [Library { path: via_proc, ..root.library(libssl) }]);
    }

    #[test]
    fn ssl_libraries_opens_a_deleted_libssl_through_map_files() {
        let root = FakeRoot::new("deleted");
        let new_libssl = root.file(LIBSSL, "ssl 3.0.14"); // the upgrade, not what the broker runs
        root.file(LIBCRYPTO, "crypto");
        let maps = "\
7f1c29000000-7f1c29100000 r--p 00000000 fd:01 201 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2a000000-7f1c2a020000 r--p 00000000 fd:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f1c2a020000-7f1c2a080000 r-xp 00020000 fd:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
";
        root.process(100, "mosquitto", "/usr/sbin/mosquitto", maps);
        // map_files links of one file all lead to the old inode.
        let old = root.file("old-inode/libssl.so.3", "ssl 3.0.13");
        root.symlink("proc/100/map_files/7f1c2a000000-7f1c2a020000", &old);
        root.symlink("proc/100/map_files/7f1c2a020000-7f1c2a080000", &old);
        let libraries = root.proc().ssl_libraries(100).unwrap();
        let chosen = root.path("proc/100/map_files/7f1c2a000000-7f1c2a020000");
        assert_eq!(libraries, [Library { path: chosen, ..root.library(old) }]);
        let upgraded = root.library(new_libssl);
        assert_ne!((libraries[0].dev, libraries[0].ino), (upgraded.dev, upgraded.ino));
    }

    #[test]
    fn ssl_libraries_opens_a_container_library_through_its_root() {
        let root = FakeRoot::new("container");
        let maps = "7f0000000000-7f0000010000 r-xp 00000000 00:2a 77 /usr/lib/libssl.so.1.1\n";
        root.file("proc/500/comm", "mosquitto\n");
        root.file("proc/500/maps", maps);
        let in_container = root.file("proc/500/root/usr/lib/libssl.so.1.1", "container ssl");
        assert!(!root.path("usr/lib/libssl.so.1.1").exists()); // not on the host
        assert_eq!(root.proc().ssl_libraries(500).unwrap(), [root.library(in_container)]);
    }

    #[test]
    fn ssl_libraries_keeps_paths_with_spaces_and_skips_odd_lines() {
        let root = FakeRoot::new("odd");
        let maps = "\
garbage
7f00-7f10 r-xp
zz-7f10 r-xp 00000000 fd:01 9 /opt/libssl.so.3
7f00 r-xp 00000000 fd:01 9 /opt/libssl.so.3
7f0000000000-7f0000010000 r-xp 00000000 fd:01 9 /opt/my broker/lib/libssl.so.3
7f0000010000-7f0000020000 r-xp 00000000 fd:01 10 /opt/missing/libssl.so.3

";
        root.process(600, "broker", "/opt/my broker/broker", maps);
        let libssl = root.file("opt/my broker/lib/libssl.so.3", "ssl");
        let libraries = root.proc().ssl_libraries(600).unwrap();
        assert_eq!(
            libraries,
            [Library { path: root.path("proc/600/root/opt/my broker/lib/libssl.so.3"), ..root.library(libssl) }]
        );
    }

    #[test]
    fn system_libraries_deduplicates_by_inode() {
        let root = FakeRoot::new("system");
        let libssl = root.file(LIBSSL, "ssl");
        root.symlink("usr/lib/x86_64-linux-gnu/libssl.so", "libssl.so.3");
        root.file(LIBCRYPTO, "crypto");
        root.file("usr/lib/x86_64-linux-gnu/libssl3.so", "nss"); // Mozilla NSS, not OpenSSL
        root.symlink("usr/lib/x86_64-linux-gnu/libssl.so.1.1", "gone"); // dangling
        fs::create_dir_all(root.path("usr/lib/x86_64-linux-gnu/libssl.so.d")).unwrap(); // not a file
        let legacy = root.file("usr/lib64/libssl.so.1.1", "legacy ssl");
        root.symlink("lib", "usr/lib"); // merged /usr
        // Two processes mapping the host's libssl, one in a container with its own.
        root.process(100, "mosquitto", "/usr/sbin/mosquitto", MOSQUITTO_MAPS);
        root.process(101, "haproxy", "/usr/sbin/haproxy", MOSQUITTO_MAPS);
        root.file("proc/500/comm", "mosquitto\n");
        root.file("proc/500/maps", "7f0000000000-7f0000010000 r-xp 00000000 00:2a 77 /usr/lib/libssl.so.3\n");
        let in_container = root.file("proc/500/root/usr/lib/libssl.so.3", "container ssl");

        let proc = root.proc();
        // Per process, both resolve to the same (dev, ino).
        let (a, b) = (proc.ssl_libraries(100).unwrap(), proc.ssl_libraries(101).unwrap());
        assert_eq!((a[0].dev, a[0].ino), (b[0].dev, b[0].ino));
        assert_eq!(proc.system_libraries(), [root.library(libssl), root.library(legacy), root.library(in_container)]);
    }

    #[test]
    fn ssl_libraries_of_a_process_without_libssl() {
        let root = FakeRoot::new("nolibssl");
        root.file(LIBCRYPTO, "crypto");
        let maps = "7f1c29000000-7f1c29100000 r--p 00000000 fd:01 201 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n";
        root.process(700, "beam.smp", "/usr/lib/erlang/erts-14/bin/beam.smp", maps);
        let err = root.proc().ssl_libraries(700).unwrap_err();
        assert!(matches!(&err, TargetError::NoLibssl { pid: 700, comm } if comm == "beam.smp"), "{err:?}");
        assert!(err.to_string().starts_with("process 700 (beam.smp) does not map libssl"));
    }

    #[test]
    fn ssl_libraries_of_a_missing_process() {
        let root = FakeRoot::new("nosuch");
        let err = root.proc().ssl_libraries(12345).unwrap_err();
        assert!(matches!(err, TargetError::NoSuchProcess { pid: 12345 }), "{err:?}");
        assert_eq!(err.to_string(), "no process 12345 (is the broker running?)");
    }

    #[test]
    fn ssl_libraries_reports_a_libssl_it_cannot_open() {
        let root = FakeRoot::new("unopenable");
        root.process(800, "mosquitto", "/usr/sbin/mosquitto", MOSQUITTO_MAPS); // no library files
        let err = root.proc().ssl_libraries(800).unwrap_err();
        assert!(matches!(&err, TargetError::Proc { path, .. } if path.ends_with(LIBSSL)), "{err:?}");
    }

    #[test]
    fn libssl_names() {
        for name in ["libssl.so", "libssl.so.3", "libssl.so.1.1", "libssl-8e6f7b43.so.3", "libssl-3.so"] {
            assert!(is_libssl(name.as_bytes()), "{name}");
        }
        for name in
            ["libssl3.so", "libcrypto.so.3", "libssl.a", "libssl_helper.so", "libssl.sox", "libssl-x.sox", "libssl"]
        {
            assert!(!is_libssl(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn maps_lines() {
        let entry = MapsEntry::parse(b"7f00-7f10 r-xp 00000000 fd:01 9   /usr/lib/libssl.so.3 (deleted)").unwrap();
        assert_eq!(entry, MapsEntry { range: b"7f00-7f10", path: b"/usr/lib/libssl.so.3", deleted: true });
        assert_eq!(entry.file_name(), b"libssl.so.3");
        for line in [
            &b""[..],
            b"7f00-7f10 rw-p 00000000 00:00 0",
            b"7f00-7f10 rw-p 00000000 00:00 0 [heap]",
            b"7f00-7f10-7f20 r-xp 0 fd:01 9 /a",
        ] {
            assert_eq!(MapsEntry::parse(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    fn caps(root: &FakeRoot, cap_eff: &str) -> Vec<&'static str> {
        root.file(
            "proc/self/status",
            &format!("Name:\tmqtt-keepalive\nCapPrm:\t000001ffffffffff\nCapEff:\t{cap_eff}\n"),
        );
        root.proc().missing_capabilities()
    }

    #[test]
    fn missing_capabilities_from_cap_eff() {
        let root = FakeRoot::new("caps");
        assert_eq!(caps(&root, "000001ffffffffff"), Vec::<&str>::new()); // root
        assert_eq!(caps(&root, "0000000000000000"), ["CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(caps(&root, "0000000000200000"), ["CAP_BPF", "CAP_PERFMON"]); // CAP_SYS_ADMIN only
        assert_eq!(caps(&root, "000000c000000000"), ["CAP_SYS_ADMIN"]); // CAP_BPF + CAP_PERFMON
        assert_eq!(caps(&root, "not hex"), ["CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"]);
        fs::remove_file(root.path("proc/self/status")).unwrap();
        assert_eq!(root.proc().missing_capabilities(), ["CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn missing_capabilities_on_a_kernel_before_cap_bpf() {
        let root = FakeRoot::new("oldkernel");
        root.file("proc/sys/kernel/cap_last_cap", "37\n"); // Linux 5.4
        assert_eq!(caps(&root, "0000003fffffffff"), Vec::<&str>::new()); // root there
        assert_eq!(caps(&root, "0000000000000000"), ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn not_root_message() {
        let err = TargetError::NotRoot { missing: vec!["CAP_BPF", "CAP_PERFMON"] };
        assert!(err.to_string().ends_with("(missing: CAP_BPF, CAP_PERFMON)"), "{err}");
    }

    const TRACEPOINTS: [(&str, &str); 2] = [("sock", "inet_sock_set_state"), ("syscalls", "sys_enter_close")];

    fn tracepoint_dirs(root: &FakeRoot, tracefs: &str, tracepoints: &[(&str, &str)]) {
        for (category, name) in tracepoints {
            fs::create_dir_all(root.path(&format!("{tracefs}/events/{category}/{name}"))).unwrap();
        }
    }

    #[test]
    fn check_kernel_needs_btf() {
        let root = FakeRoot::new("nobtf");
        tracepoint_dirs(&root, "sys/kernel/tracing", &TRACEPOINTS);
        let err = check_kernel(&root.dir, &TRACEPOINTS, false).unwrap_err();
        assert!(matches!(err, TargetError::NoBtf), "{err:?}");
    }

    #[test]
    fn check_kernel_needs_tracefs() {
        let root = FakeRoot::new("notracefs");
        root.file("sys/kernel/btf/vmlinux", "");
        fs::create_dir_all(root.path("sys/kernel/tracing")).unwrap(); // mount point, not mounted
        let err = check_kernel(&root.dir, &TRACEPOINTS, false).unwrap_err();
        assert!(matches!(err, TargetError::NoTracefs { .. }), "{err:?}");
    }

    #[test]
    fn check_kernel_needs_each_tracepoint() {
        let root = FakeRoot::new("notracepoint");
        root.file("sys/kernel/btf/vmlinux", "");
        tracepoint_dirs(&root, "sys/kernel/debug/tracing", &TRACEPOINTS[..1]);
        let err = check_kernel(&root.dir, &TRACEPOINTS, false).unwrap_err();
        let tracefs = root.path("sys/kernel/debug/tracing");
        assert!(
            matches!(&err, TargetError::NoTracepoint { name, tracefs: t } if name == "syscalls/sys_enter_close" && *t == tracefs),
            "{err:?}"
        );
    }

    #[test]
    fn check_kernel_passes_with_btf_and_tracepoints() {
        let root = FakeRoot::new("kernelok");
        root.file("sys/kernel/btf/vmlinux", "");
        tracepoint_dirs(&root, "sys/kernel/debug/tracing", &TRACEPOINTS);
        check_kernel(&root.dir, &TRACEPOINTS, false).unwrap();
        // /sys/kernel/tracing is preferred when it is mounted.
        fs::create_dir_all(root.path("sys/kernel/tracing/events")).unwrap();
        let err = check_kernel(&root.dir, &TRACEPOINTS, false).unwrap_err();
        assert!(matches!(err, TargetError::NoTracepoint { tracefs, .. } if tracefs.ends_with("sys/kernel/tracing")));
    }

    #[test]
    fn real_system_does_not_panic() {
        let proc = Proc::system();
        assert_eq!(proc.pids_named("definitely-not-running-xyz"), Vec::<u32>::new());
        let pid = std::process::id();
        assert!(proc.exists(pid));
        match proc.ssl_libraries(pid) {
            Ok(libraries) => assert!(!libraries.is_empty()),
            Err(TargetError::NoLibssl { pid: p, .. }) => assert_eq!(p, pid),
            Err(e) => panic!("unexpected error for our own process: {e}"),
        }
    }
}
