//! `mqtt-keepalive top`: a terminal view of a running agent (`top http://HOST:9883`) or of a
//! capture or pipe being analysed (`top FILE`, `top -`).
//!
//! Contract: the open sessions nearest their deadline (counting down; those past it, not closed
//! by the broker, on top), the recent closes (how, by whom, why), ping round trips, and the
//! dashboard's totals and rates. Keys: `s` sort, `/` filter by client id (a glob), `p` pause,
//! arrows select, Enter a session's timeline, Esc back, `q` quit. Parts, one job each:
//! [`model`] orders, filters and formats (no terminal); [`agent`] reads an agent's `/sessions`
//! and `/metrics` (bounded requests, one at a time, on a thread of their own); [`local`] folds
//! the event stream of the same analysis `analyze` runs; [`ui`] draws a frame with ratatui;
//! [`run`] is the loop: a frame each [`TICK`] (ratatui writes only the cells that changed: no
//! flicker), keys in between.

pub mod agent;
pub mod local;
pub mod model;
pub mod ui;

use model::{Action, Outcome, Snapshot, View};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the screen is drawn (the countdowns move).
pub const TICK: Duration = Duration::from_millis(250);
/// Most open sessions (and closes) asked of an agent at once.
pub const MAX_ROWS: usize = 500;

/// Where `top` looks.
pub enum TopSource {
    /// A running agent's base URL.
    Agent(String),
    /// Captures or a pipe, analysed as `analyze` does; `live` for a pipe or FIFO.
    Capture { opts: crate::app::AnalyzeOptions, live: bool },
}

/// What `top` needs.
pub struct TopOptions {
    pub source: TopSource,
    /// How often an agent is asked.
    pub refresh: Duration,
}

/// Why `top` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error("top draws on a terminal: run it in one (for a report use `analyze`, for JSON `/sessions`)")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// What the screen reads each tick: a snapshot, and when it was taken.
trait Source {
    /// The latest snapshot (asking for at most `rows` open sessions matching `filter`).
    fn latest(&mut self, rows: usize, filter: &str) -> Option<(Snapshot, Instant)>;

    /// Stop (or resume) asking the source.
    fn pause(&self, _paused: bool) {}
}

/// An agent, asked on its own thread: one request at a time, every `refresh`, or at once when
/// the filter or the rows wanted change.
struct AgentSource {
    wanted: Arc<Mutex<(usize, String, bool)>>,
    latest: Arc<Mutex<Option<(Snapshot, Instant)>>>,
    wake: std::sync::mpsc::Sender<()>,
    last_wanted: (usize, String),
}

impl AgentSource {
    fn start(mut agent: agent::Agent, refresh: Duration, stop: Arc<AtomicBool>) -> Self {
        let wanted = Arc::new(Mutex::new((50usize, String::new(), false)));
        let latest: Arc<Mutex<Option<(Snapshot, Instant)>>> = Arc::new(Mutex::new(None));
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let (w, l) = (wanted.clone(), latest.clone());
        std::thread::spawn(move || {
            let mut previous: Option<Snapshot> = None;
            while !stop.load(Ordering::Relaxed) {
                let (rows, filter, paused) = w.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if !paused {
                    let glob = (!filter.is_empty()).then_some(filter.as_str());
                    let snap = match agent.fetch(rows, glob) {
                        Ok(s) => s,
                        // Keep showing what was last read, with the error.
                        Err(e) => Snapshot {
                            source: agent.name(),
                            error: Some(e.to_string()),
                            ..previous.clone().unwrap_or_default()
                        },
                    };
                    previous = Some(snap.clone());
                    *l.lock().unwrap_or_else(|p| p.into_inner()) = Some((snap, crate::time::monotonic_now()));
                }
                let _ = woken.recv_timeout(refresh);
                while woken.try_recv().is_ok() {}
            }
        });
        AgentSource { wanted, latest, wake, last_wanted: (0, String::new()) }
    }
}

impl Source for AgentSource {
    fn pause(&self, paused: bool) {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner()).2 = paused;
    }

    fn latest(&mut self, rows: usize, filter: &str) -> Option<(Snapshot, Instant)> {
        let now = (rows, filter.to_string());
        if now != self.last_wanted {
            {
                let mut w = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
                (w.0, w.1) = now.clone();
            }
            self.last_wanted = now;
            let _ = self.wake.send(());
        }
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A capture being analysed.
struct LocalSource {
    fold: local::SharedFold,
    name: String,
}

impl Source for LocalSource {
    fn latest(&mut self, rows: usize, filter: &str) -> Option<(Snapshot, Instant)> {
        let glob = (!filter.is_empty()).then(|| crate::sink::report::filter::Glob::new(filter));
        let mut snap = self.fold.lock().unwrap_or_else(|p| p.into_inner()).snapshot(rows, glob.as_ref());
        snap.source.clone_from(&self.name);
        Some((snap, crate::time::monotonic_now()))
    }
}

/// The key's action, if it has one.
fn action(key: event::KeyEvent, editing: bool) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    Some(match key.code {
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc => Action::Back,
        KeyCode::Backspace => Action::Backspace,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::Char(c) if editing => Action::Type(c),
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('s') => Action::NextSort,
        KeyCode::Char('p') | KeyCode::Char(' ') => Action::TogglePause,
        KeyCode::Char('/') | KeyCode::Char('f') => Action::StartFilter,
        KeyCode::Char('k') => Action::Up,
        KeyCode::Char('j') => Action::Down,
        _ => return None,
    })
}

/// Runs `top` until `q` (or Ctrl-C).
pub fn run(opts: TopOptions) -> Result<(), TopError> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut source: Box<dyn Source> = match opts.source {
        TopSource::Agent(url) => Box::new(AgentSource::start(agent::Agent::parse(&url)?, opts.refresh, stop.clone())),
        TopSource::Capture { opts, live } => {
            let name = opts
                .files
                .iter()
                .map(|f| if f.as_os_str() == "-" { "standard input".into() } else { f.display().to_string() })
                .collect::<Vec<_>>()
                .join(", ");
            Box::new(LocalSource { fold: local::run(opts, live, stop.clone()), name })
        }
    };
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> Result<(), TopError> {
        let mut view = View::default();
        let mut shown: Option<(Snapshot, Instant)> = None;
        let mut frozen_at: Option<f64> = None;
        loop {
            let rows = usize::from(terminal.size()?.height).clamp(10, MAX_ROWS);
            if (!view.paused || shown.is_none())
                && let Some(latest) = source.latest(rows, &view.filter)
            {
                shown = Some(latest);
            }
            let (snap, taken) = shown.clone().unwrap_or_else(|| {
                (Snapshot { source: "connecting...".into(), ..Snapshot::default() }, crate::time::monotonic_now())
            });
            let running = if snap.finished { 0.0 } else { taken.elapsed().as_secs_f64() };
            let now = match (view.paused, frozen_at) {
                (true, Some(t)) => t,
                (true, None) => *frozen_at.insert(snap.now + running),
                (false, _) => {
                    frozen_at = None;
                    snap.now + running
                }
            };
            terminal.draw(|f| ui::draw(f, &snap, &view, now))?;
            if event::poll(TICK)?
                && let TermEvent::Key(key) = event::read()?
                && key.kind != KeyEventKind::Release
                && let Some(a) = action(key, view.editing.is_some())
            {
                match view.apply(a, &snap, now) {
                    Outcome::Quit => return Ok(()),
                    Outcome::Refetch | Outcome::Redraw => {}
                }
                source.pause(view.paused);
            }
        }
    })();
    stop.store(true, Ordering::Relaxed);
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    #[test]
    fn keys_map_to_actions_and_letters_go_to_the_filter_while_typing() {
        let k = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(action(k('q'), false), Some(Action::Quit));
        assert_eq!(action(k('q'), true), Some(Action::Type('q')));
        assert_eq!(action(k('s'), false), Some(Action::NextSort));
        assert_eq!(action(k('/'), false), Some(Action::StartFilter));
        assert_eq!(action(k('x'), false), None);
        assert_eq!(action(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), true), Some(Action::Quit));
    }
}
