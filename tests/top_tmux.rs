//! `mqtt-keepalive top` as a person sees it: in tmux (send-keys, capture-pane), against a live
//! agent capturing `lo` in front of a real mosquitto. A chatty client pings every second; a
//! silent one connects after it with a longer keepalive: it is listed below the chatty one,
//! rises to the top as its deadline nears, counts down, expires, and its close (by the broker,
//! expired) appears among the recent closes. The filter, the timeline and `q` work from keys.
//! Needs root (packet capture), mosquitto, tmux and python3; CI installs them.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!("mqtt-keepalive-top-{}", std::process::id());
        let t = Tmux { socket };
        t.run(&["new-session", "-d", "-s", "top", "-x", &width.to_string(), "-y", &height.to_string(), command]);
        t.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("tmux is installed");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Captures the screen until `f` holds; the last screen on failure.
    #[allow(clippy::disallowed_methods)] // waits on real processes
    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut screen = String::new();
        while Instant::now() < deadline {
            screen = self.screen();
            if f(&screen) {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; the screen:\n{screen}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The open sessions' rows: the lines between the table's header and the closes (or the keys).
fn open_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !l.contains("DEADLINE"))
        .skip(1)
        .take_while(|l| !l.contains("Recent closes") && !l.contains("s sort"))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The recent closes' rows.
fn close_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !l.contains("Recent closes"))
        .skip(2)
        .take_while(|l| !l.contains("s sort"))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Seconds left on a row's countdown (`6.2s`, `1m05s` is not needed here; `EXPIRED -1.0s`).
fn countdown(row: &str) -> Option<f64> {
    let cell = row.trim_start().trim_start_matches("EXPIRED").trim_start();
    let first = cell.split_whitespace().next()?;
    first.strip_suffix('s')?.parse().ok()
}

#[test]
#[ignore = "needs root, mosquitto, tmux and python3"]
#[allow(clippy::disallowed_methods)] // times the screen against the real clock
fn a_silent_client_rises_to_the_top_counts_down_expires_and_its_close_appears() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("");
    let agent = Agent::start(&[broker.port], &dir.path().join("events.jsonl"));
    let command = format!("{} top http://{} --refresh 250ms", env!("CARGO_BIN_EXE_mqtt-keepalive"), agent.listen);
    let tmux = Tmux::start(&command, 110, 30);

    // chatty: keepalive 4, a ping every second: its deadline is always 5 to 6 s away.
    let _chatty =
        Reaped(mqtt_client(broker.port, &["--keepalive", "4", "--client-id", "chatty", "pings:30:1", "disconnect"]));
    tmux.wait("chatty listed", Duration::from_secs(10), |s| open_rows(s).iter().any(|r| r.contains("chatty")));
    // silent: keepalive 6 (deadline 9 s after its CONNECT), never a packet after it.
    let _silent = Reaped(mqtt_client(broker.port, &["--keepalive", "6", "--client-id", "silent", "wait-close:30"]));

    let below = tmux.wait("silent listed, below chatty", Duration::from_secs(8), |s| {
        let rows = open_rows(s);
        let at = |id| rows.iter().position(|r| r.contains(id));
        matches!((at("chatty"), at("silent")), (Some(c), Some(q)) if c < q)
    });
    let on_top = tmux
        .wait("silent on top", Duration::from_secs(8), |s| open_rows(s).first().is_some_and(|r| r.contains("silent")));
    let seen = Instant::now();
    let first = countdown(open_rows(&on_top)[0]).unwrap_or_else(|| panic!("a countdown: {on_top}"));
    std::thread::sleep(Duration::from_millis(1500));
    let later = tmux.screen();
    let elapsed = seen.elapsed().as_secs_f64();
    let row = open_rows(&later).into_iter().find(|r| r.contains("silent")).unwrap_or_else(|| panic!("{later}"));
    let then = countdown(row).unwrap_or_else(|| panic!("a countdown: {row}"));
    // Down by the time between the two looks, give or take a refresh and a frame.
    assert!(
        row.contains("EXPIRED") || ((first - then) - elapsed).abs() < 0.75,
        "counts down: {first} then {then}, {elapsed:.2} s apart\n{on_top}\n{later}"
    );

    // The timeline of the selected (top) session, from the keys.
    tmux.keys(&["Enter"]);
    let timeline =
        tmux.wait("the timeline", Duration::from_secs(10), |s| s.contains("Session ") && s.contains("silent"));
    assert!(timeline.contains("connect") && timeline.contains("keepalive_s=6"), "{timeline}");
    tmux.keys(&["Escape"]);

    // Expired while open (if the broker was slower than the agent's clock), then closed.
    let mut seen_expired = None;
    let closed = tmux.wait("silent's close among the recent closes", Duration::from_secs(25), |s| {
        if seen_expired.is_none() && open_rows(s).first().is_some_and(|r| r.contains("silent") && r.contains("EXPIRED"))
        {
            seen_expired = Some(s.to_string());
        }
        close_rows(s).iter().any(|r| r.contains("silent"))
    });
    let close = close_rows(&closed).into_iter().find(|r| r.contains("silent")).unwrap().to_string();
    assert!(close.contains("by broker") && close.contains("expired"), "who and why: {close}\n{closed}");
    assert!(!open_rows(&closed).iter().any(|r| r.contains("silent")), "no longer open:\n{closed}");
    let header = closed.lines().take(3).collect::<Vec<_>>().join("  ");
    // The totals are the agent's /metrics: one expiry counted, one close, the chatty one open.
    // (A row turns EXPIRED on the clock at its deadline; the agent counts the expiry a moment
    // later, when its own clock, held a little behind for packets still queued, passes it.)
    let closed = if header.contains("expiries 1") {
        closed
    } else {
        tmux.wait("the expiry counted", Duration::from_secs(10), |s| {
            s.lines().take(3).any(|l| l.contains("expiries 1"))
        })
    };
    let header = closed.lines().take(3).collect::<Vec<_>>().join("  ");
    assert!(header.contains("open 1 (0 expired)") && header.contains("closes 1"), "{closed}");
    eprintln!(
        "below:\n{below}\non top:\n{on_top}\nexpired while open: {}\nclosed:\n{closed}",
        seen_expired.as_deref().unwrap_or("(the broker closed it before the agent's clock passed the deadline)")
    );

    // The filter: only client ids matching it, open and closed.
    tmux.keys(&["/", "s", "i", "l", "*", "Enter"]);
    tmux.wait("the filter applied", Duration::from_secs(10), |s| s.contains("filter: sil*"));
    let filtered =
        tmux.wait("chatty filtered out", Duration::from_secs(10), |s| !s.contains("chatty") && s.contains("silent"));
    assert!(close_rows(&filtered).iter().any(|r| r.contains("silent")), "{filtered}");

    // q quits and gives the terminal back.
    tmux.keys(&["q"]);
    tmux.wait("top to exit", Duration::from_secs(10), |_| {
        tmux.run(&["display-message", "-p", "-t", "top", "#{pane_dead} #{pane_dead_status}"]).trim() == "1 0"
    });
}
