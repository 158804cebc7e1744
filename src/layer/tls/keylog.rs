//! The TLS key log: session secrets by client random, in the SSLKEYLOGFILE format Wireshark reads.
//!
//! Contract: [`KeyLog`] parses `LABEL <client random, 64 hex digits> <secret, hex>` lines
//! (`CLIENT_RANDOM` = TLS 1.2 master secret; `CLIENT_HANDSHAKE_TRAFFIC_SECRET`,
//! `SERVER_HANDSHAKE_TRAFFIC_SECRET`, `CLIENT_TRAFFIC_SECRET_0`, `SERVER_TRAFFIC_SECRET_0` =
//! TLS 1.3; other labels and `#` comments are skipped, malformed lines counted) and answers
//! [`KeyLog::lookup`] by client random. A key log opened from a file ([`KeyLog::open`]; or
//! [`KeyLog::follow`], which waits for a file that does not exist yet) can [`KeyLog::refresh`]:
//! it reads only the complete lines appended since the last read (a file being written by
//! clients or a proxy, for `live --tls-keylog`), and starts over if the file was truncated.
//! It is shared between connections (`Arc<KeyLog>`; lookups take a read lock). Key material
//! never appears in `Debug` output, errors or logs: they name the file and counts only.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::keys::Secret;

/// Secrets of one TLS session (one client random).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionKeys {
    /// TLS 1.2: the 48-byte master secret (`CLIENT_RANDOM`).
    pub master: Option<Secret>,
    pub client_handshake: Option<Secret>,
    pub server_handshake: Option<Secret>,
    /// TLS 1.3: `CLIENT_TRAFFIC_SECRET_0`.
    pub client_traffic: Option<Secret>,
    /// TLS 1.3: `SERVER_TRAFFIC_SECRET_0`.
    pub server_traffic: Option<Secret>,
}

/// Reading a key log file failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyLogError {
    #[error("cannot read the TLS key log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Counts of what the key log read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLogStats {
    /// Lines that gave a secret.
    pub secrets: u64,
    /// Lines that are neither a known secret, another label, a comment, nor blank.
    pub malformed: u64,
    /// Distinct client randoms.
    pub sessions: usize,
}

#[derive(Default)]
struct Table {
    by_random: HashMap<[u8; 32], SessionKeys>,
    stats: KeyLogStats,
}

struct FileSource {
    path: PathBuf,
    /// Bytes of the file consumed (up to the last complete line).
    offset: u64,
    /// `follow`: a missing file is not (yet) an error.
    may_be_missing: bool,
}

/// Secrets by client random; see the module doc.
pub struct KeyLog {
    table: RwLock<Table>,
    file: Option<Mutex<FileSource>>,
    /// Secrets added so far (lets a session that found no keys retry only when there are new ones).
    generation: AtomicU64,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = self.stats();
        f.debug_struct("KeyLog")
            .field("sessions", &stats.sessions)
            .field("secrets", &stats.secrets)
            .field("malformed", &stats.malformed)
            .finish_non_exhaustive()
    }
}

impl KeyLog {
    /// A key log from text (no file behind it: `refresh` reads nothing).
    pub fn parse(text: &str) -> KeyLog {
        let log = KeyLog { table: RwLock::new(Table::default()), file: None, generation: AtomicU64::new(0) };
        log.add_lines(text);
        log
    }

    /// Opens and reads a key log file; later `refresh` calls read what is appended.
    pub fn open(path: &Path) -> Result<KeyLog, KeyLogError> {
        let log = KeyLog {
            table: RwLock::new(Table::default()),
            file: Some(Mutex::new(FileSource { path: path.to_path_buf(), offset: 0, may_be_missing: false })),
            generation: AtomicU64::new(0),
        };
        log.refresh()?;
        Ok(log)
    }

    /// A key log file to follow that may not exist yet (`live --tls-keylog`, before any client
    /// wrote to it): reads what is there; `refresh` reads what comes, and a missing file is
    /// empty until it appears.
    pub fn follow(path: &Path) -> Result<KeyLog, KeyLogError> {
        let log = KeyLog {
            table: RwLock::new(Table::default()),
            file: Some(Mutex::new(FileSource { path: path.to_path_buf(), offset: 0, may_be_missing: true })),
            generation: AtomicU64::new(0),
        };
        log.refresh()?;
        Ok(log)
    }

    /// Reads the complete lines appended to the file since the last read; returns how many
    /// secrets they added.
    pub fn refresh(&self) -> Result<u64, KeyLogError> {
        let Some(file) = &self.file else { return Ok(0) };
        let mut src = file.lock().unwrap_or_else(|e| e.into_inner());
        let path = src.path.clone();
        let io = |source| KeyLogError::Io { path: path.clone(), source };
        let mut f = match std::fs::File::open(&src.path) {
            Ok(f) => f,
            Err(e) if src.may_be_missing && e.kind() == std::io::ErrorKind::NotFound => {
                src.offset = 0; // read it from the start once it exists
                return Ok(0);
            }
            Err(e) => return Err(io(e)),
        };
        let len = f.metadata().map_err(io)?.len();
        if len < src.offset {
            src.offset = 0; // truncated or replaced: read it again
        }
        f.seek(SeekFrom::Start(src.offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.take(len - src.offset).read_to_end(&mut buf).map_err(io)?;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { return Ok(0) };
        src.offset += end as u64 + 1;
        drop(src);
        let before = self.stats().secrets;
        self.add_lines(&String::from_utf8_lossy(&buf[..=end]));
        Ok(self.stats().secrets - before)
    }

    /// For a session that just found no line: a followed file ([`KeyLog::follow`]) reads what
    /// was appended now rather than at the next scheduled `refresh` (a client writes its lines
    /// during the handshake, just before its first protected record). A key log from `open` or
    /// `parse` has all its lines already: nothing is read. Errors are left to the scheduled
    /// `refresh` to report.
    pub fn catch_up(&self) {
        let followed = self.file.as_ref().is_some_and(|f| f.lock().unwrap_or_else(|e| e.into_inner()).may_be_missing);
        if followed {
            let _ = self.refresh();
        }
    }

    /// The secrets logged for a client random.
    pub fn lookup(&self, client_random: &[u8; 32]) -> Option<SessionKeys> {
        self.read().by_random.get(client_random).cloned()
    }

    /// Changes whenever lines with secrets are added (by `refresh`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What was read so far.
    pub fn stats(&self) -> KeyLogStats {
        let t = self.read();
        KeyLogStats { sessions: t.by_random.len(), ..t.stats }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn add_lines(&self, text: &str) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            match parse_line(line) {
                Line::Secret(label, random, secret) => {
                    let keys = t.by_random.entry(random).or_default();
                    let slot = match label {
                        Label::ClientRandom => &mut keys.master,
                        Label::ClientHandshake => &mut keys.client_handshake,
                        Label::ServerHandshake => &mut keys.server_handshake,
                        Label::ClientTraffic => &mut keys.client_traffic,
                        Label::ServerTraffic => &mut keys.server_traffic,
                    };
                    *slot = Some(secret);
                    t.stats.secrets += 1;
                }
                Line::Skip => {}
                Line::Malformed => t.stats.malformed += 1,
            }
        }
        self.generation.store(t.stats.secrets, Ordering::Release);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    ClientRandom,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic,
    ServerTraffic,
}

enum Line {
    Secret(Label, [u8; 32], Secret),
    Skip,
    Malformed,
}

fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Line::Skip;
    }
    let mut parts = line.split_ascii_whitespace();
    let (Some(label), Some(random), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Line::Malformed;
    };
    let label = match label {
        "CLIENT_RANDOM" => Label::ClientRandom,
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Label::ClientHandshake,
        "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Label::ServerHandshake,
        "CLIENT_TRAFFIC_SECRET_0" => Label::ClientTraffic,
        "SERVER_TRAFFIC_SECRET_0" => Label::ServerTraffic,
        // EXPORTER_SECRET, CLIENT_EARLY_TRAFFIC_SECRET, RSA, ...: not needed here.
        l if l.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') => return Line::Skip,
        _ => return Line::Malformed,
    };
    let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else { return Line::Malformed };
    let Ok(random) = <[u8; 32]>::try_from(random) else { return Line::Malformed };
    if secret.is_empty() || secret.len() > 64 {
        return Line::Malformed;
    }
    Line::Secret(label, random, Secret::new(secret))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| Some((char::from(p[0]).to_digit(16)? * 16 + char::from(p[1]).to_digit(16)?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const R1: &str = "cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7";
    const SECRET: &str = "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21";

    #[test]
    fn parses_the_wireshark_format() {
        let text = format!(
            "# comment\n\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {R1} {SECRET}\nEXPORTER_SECRET {R1} {SECRET}\n\
             CLIENT_RANDOM {r2} {master}\nnot a line\nCLIENT_RANDOM zz {SECRET}\n",
            r2 = "11".repeat(32),
            master = "22".repeat(48)
        );
        let log = KeyLog::parse(&text);
        let keys = log.lookup(&unhex(R1).unwrap().try_into().unwrap()).unwrap();
        assert_eq!(keys.client_handshake.unwrap().expose(), unhex(SECRET).unwrap());
        assert!(keys.master.is_none());
        assert_eq!(log.lookup(&[0x11; 32]).unwrap().master.unwrap().expose(), [0x22; 48]);
        assert!(log.lookup(&[0x33; 32]).is_none());
        assert_eq!(log.stats(), KeyLogStats { secrets: 2, malformed: 2, sessions: 2 });
    }

    #[test]
    fn refresh_reads_only_complete_appended_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "CLIENT_RANDOM {} {}", "11".repeat(32), "22".repeat(48)).unwrap();
        write!(f, "CLIENT_RANDOM {} {}", "33".repeat(32), "44".repeat(24)).unwrap(); // half a line
        f.flush().unwrap();
        let log = KeyLog::open(&path).unwrap();
        assert!(log.lookup(&[0x11; 32]).is_some());
        assert!(log.lookup(&[0x33; 32]).is_none(), "an incomplete line is not read yet");
        writeln!(f, "{}", "44".repeat(24)).unwrap();
        f.flush().unwrap();
        assert_eq!(log.refresh().unwrap(), 1);
        assert_eq!(log.lookup(&[0x33; 32]).unwrap().master.unwrap().expose(), [0x44; 48]);
        assert_eq!(log.refresh().unwrap(), 0);
        // Truncated and rewritten: read from the start again.
        std::fs::write(&path, format!("CLIENT_RANDOM {} {}\n", "55".repeat(32), "66".repeat(48))).unwrap();
        assert_eq!(log.refresh().unwrap(), 1);
        assert!(log.lookup(&[0x55; 32]).is_some());
    }

    #[test]
    fn follow_waits_for_a_file_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.log");
        assert!(KeyLog::open(&path).is_err());
        let log = KeyLog::follow(&path).unwrap();
        assert_eq!((log.refresh().unwrap(), log.generation()), (0, 0));
        std::fs::write(&path, format!("CLIENT_RANDOM {} {}\n", "11".repeat(32), "22".repeat(48))).unwrap();
        assert_eq!(log.refresh().unwrap(), 1);
        assert_eq!(log.generation(), 1);
        assert!(log.lookup(&[0x11; 32]).is_some());
    }

    #[test]
    fn key_material_never_appears_in_debug_or_errors() {
        let master_hex = format!("{SECRET}{}", &SECRET[..32]); // 48 bytes
        let log = KeyLog::parse(&format!("CLIENT_RANDOM {} {master_hex}\n", "11".repeat(32)));
        let keys = log.lookup(&[0x11; 32]).unwrap();
        assert_eq!(keys.master.as_ref().unwrap().len(), 48);
        for text in [format!("{log:?}"), format!("{keys:?}"), format!("{keys:#?}")] {
            // Neither as hex nor as the decimal bytes Debug of a Vec<u8> would print (0xb3 0xed).
            assert!(!text.contains(&SECRET[..8]) && !text.contains("179") && !text.contains("237"), "{text}");
        }
        let err = KeyLog::open(Path::new("/nonexistent/keys.log")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/keys.log") && !err.contains(SECRET), "{err}");
    }
}
