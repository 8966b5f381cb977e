//! The live view `peerhash mine` shows on a terminal: the pool, the shares, one line per
//! device and the last events, redrawn about once a second from the status board. `q` or
//! Ctrl-C sets the same flag SIGTERM does, so found shares are still submitted and answered.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

use crate::mining::miner::{MinerEvent, Stats, Timed};
use crate::mining::status::{DeviceStatus, Snapshot, StatusBoard};

/// How often the view is redrawn when nothing happens.
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// The soonest an event redraws the view after the last draw.
const EVENT_REDRAW_AFTER: Duration = Duration::from_millis(250);
/// How long the view waits for a key before it looks at the miner again.
const KEY_WAIT: Duration = Duration::from_millis(100);
/// Events kept for the event list (a terminal shows fewer).
const MAX_EVENTS: usize = 500;

/// True while the terminal is in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// While the view covers the terminal, log lines go to its event list instead of stderr.
static LOG_SINK: Mutex<Option<Sender<Update>>> = Mutex::new(None);

/// What the miner's side hands the view's thread.
pub enum Update {
    Event(Box<Timed>),
    Log(String),
}

/// The live view, drawn by its own thread; dropping it restores the terminal.
pub struct LiveView {
    updates: Option<Sender<Update>>,
    ui: Option<JoinHandle<()>>,
}

impl LiveView {
    /// Whether stdout is a terminal that can show the view.
    #[must_use]
    pub fn possible() -> bool {
        io::stdout().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    }

    /// Takes over the terminal and starts drawing. `stop` is the miner's interrupt flag: the
    /// first `q` or Ctrl-C sets it, the second exits at once.
    ///
    /// # Errors
    /// The terminal cannot be put in raw mode or onto the alternate screen.
    pub fn start(board: Arc<StatusBoard>, stop: &'static AtomicBool) -> anyhow::Result<Self> {
        install_panic_hook();
        let terminal = enter_terminal()?;
        let (tx, rx) = mpsc::channel();
        if io::stderr().is_terminal() {
            *LOG_SINK.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        }
        let ui = thread::Builder::new()
            .name("peerhash-live-view".into())
            .spawn(move || {
                let mut terminal = terminal;
                let result = ui_loop(&mut terminal, &board, stop, &rx);
                stop_capturing_logs();
                restore_terminal();
                if let Err(e) = result {
                    tracing::warn!("the live view stopped: {e}; printing lines instead");
                }
            });
        match ui {
            Ok(ui) => Ok(Self {
                updates: Some(tx),
                ui: Some(ui),
            }),
            Err(e) => {
                stop_capturing_logs();
                restore_terminal();
                Err(e.into())
            }
        }
    }

    /// Hands `event` to the view; false when the view is gone (then print it instead).
    pub fn show(&self, event: &Timed) -> bool {
        self.updates
            .as_ref()
            .is_some_and(|tx| tx.send(Update::Event(Box::new(event.clone()))).is_ok())
    }
}

impl Drop for LiveView {
    /// Draws the last frame, then gives the terminal back as it was.
    fn drop(&mut self) {
        stop_capturing_logs();
        // The view's thread sees the channel close and ends.
        self.updates = None;
        if let Some(ui) = self.ui.take() {
            let _ = ui.join();
        }
        restore_terminal();
    }
}

type Screen = Terminal<CrosstermBackend<Stdout>>;

fn enter_terminal() -> anyhow::Result<Screen> {
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let entered = execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
    entered.map_err(|e| {
        restore_terminal();
        e.into()
    })
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once; safe to call from
/// any thread, a panic hook or a signal handler's exit path.
pub fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

fn stop_capturing_logs() {
    *LOG_SINK.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// A panic anywhere prints its message on a usable terminal, not into the alternate screen.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            stop_capturing_logs();
            restore_terminal();
            previous(info);
        }));
    });
}

fn ui_loop(
    terminal: &mut Screen,
    board: &StatusBoard,
    stop: &AtomicBool,
    updates: &Receiver<Update>,
) -> io::Result<()> {
    let mut view = View::default();
    let mut drawn: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if event::poll(KEY_WAIT)? {
            match event::read()? {
                Event::Key(key) if is_quit(&key) => {
                    if stop.swap(true, Ordering::SeqCst) {
                        // The second one, as with Ctrl-C on lines: out at once.
                        restore_terminal();
                        std::process::exit(130);
                    }
                    drawn = None;
                }
                Event::Resize(..) => drawn = None,
                _ => {}
            }
        }
        let finished = loop {
            match updates.try_recv() {
                Ok(Update::Event(event)) => dirty |= view.push_event(&event),
                Ok(Update::Log(line)) => {
                    view.push(None, line, Tone::Bad);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        let due = drawn.is_none_or(|t| {
            t.elapsed() >= REDRAW_EVERY || (dirty && t.elapsed() >= EVENT_REDRAW_AFTER)
        });
        if due || finished {
            view.snapshot = board.snapshot();
            view.stopping = stop.load(Ordering::SeqCst);
            terminal.draw(|frame| view.render(frame))?;
            drawn = Some(Instant::now());
            dirty = false;
        }
        if finished {
            return Ok(());
        }
    }
}

fn is_quit(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q' | 'Q') => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tone {
    Plain,
    Good,
    Bad,
}

impl Tone {
    fn style(self) -> Style {
        match self {
            Tone::Plain => Style::new(),
            Tone::Good => Style::new().fg(Color::Green),
            Tone::Bad => Style::new().fg(Color::Red),
        }
    }
}

/// What the view shows: the latest snapshot and the events that came since the start.
#[derive(Default)]
struct View {
    snapshot: Snapshot,
    /// Time (seconds since the Unix epoch, when known), text, colour.
    events: VecDeque<(Option<f64>, String, Tone)>,
    /// The final counts, once the miner has stopped (the board is no longer refreshed then).
    summary: Option<Stats>,
    stopping: bool,
}

impl View {
    fn push(&mut self, time: Option<f64>, text: String, tone: Tone) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((time, text, tone));
    }

    /// Takes in an event; true when it changes what is shown.
    fn push_event(&mut self, timed: &Timed) -> bool {
        if let MinerEvent::Summary { stats, .. } = &timed.event {
            self.summary = Some(stats.clone());
            return true;
        }
        match describe(&timed.event) {
            Some((text, tone)) => {
                self.push(Some(timed.time), text, tone);
                true
            }
            None => false,
        }
    }

    fn render(&self, frame: &mut Frame<'_>) {
        let devices = u16::try_from(self.snapshot.devices.len().max(1)).unwrap_or(u16::MAX);
        let [head, table, events] = Layout::vertical([
            Constraint::Length(6),
            Constraint::Length(devices.saturating_add(3)),
            Constraint::Min(3),
        ])
        .areas(frame.area());
        frame.render_widget(self.head(), head);
        frame.render_widget(self.devices(), table);
        let rows = usize::from(events.height.saturating_sub(2));
        frame.render_widget(self.event_list(rows), events);
    }

    fn head(&self) -> Paragraph<'_> {
        let s = &self.snapshot;
        let shares = self.summary.as_ref().unwrap_or(&s.shares);
        let label =
            |text: &'static str| Span::styled(text, Style::new().add_modifier(Modifier::BOLD));
        let (state, tone) = if s.version.is_empty() {
            ("starting".to_owned(), Tone::Plain)
        } else if s.pool.connected {
            ("connected".to_owned(), Tone::Good)
        } else {
            match &s.pool.last_error {
                Some(error) => (format!("not connected: {error}"), Tone::Bad),
                None => ("connecting".to_owned(), Tone::Plain),
            }
        };
        let mut pool = vec![
            label("Pool    "),
            Span::raw(format!("{}  ", s.pool.url)),
            Span::styled(state, tone.style()),
        ];
        if let Some(difficulty) = s.pool.difficulty {
            pool.push(Span::raw(format!("  difficulty {difficulty}")));
        }
        let job = match (&s.pool.job, s.pool.height, s.pool.job_age_seconds) {
            (None, ..) => "none yet".to_owned(),
            (Some(job), height, age) => format!(
                "{job}{}{}",
                height
                    .map(|h| format!(" at height {h}"))
                    .unwrap_or_default(),
                age.map(|a| format!(", {} old", duration(a)))
                    .unwrap_or_default()
            ),
        };
        let shares_line = vec![
            label("Shares  "),
            Span::styled(format!("accepted {}", shares.accepted), Tone::Good.style()),
            Span::raw("  "),
            Span::styled(
                format!("rejected {}", shares.rejected),
                if shares.rejected > 0 {
                    Tone::Bad.style()
                } else {
                    Style::new()
                },
            ),
            Span::raw(format!(
                "  stale {}  found {}  blocks {}",
                shares.stale, shares.found, shares.blocks
            )),
        ];
        let title = if self.summary.is_some() {
            " peerhash mine: stopped ".to_owned()
        } else if self.stopping {
            " peerhash mine: stopping, answering found shares (q again: quit at once) ".to_owned()
        } else {
            format!(" peerhash {} mine (q: stop) ", env!("CARGO_PKG_VERSION"))
        };
        Paragraph::new(vec![
            Line::from(pool),
            Line::from(vec![label("Job     "), Span::raw(job)]),
            Line::from(shares_line),
            Line::from(vec![
                label("Rate    "),
                Span::raw(format!(
                    "{} now, {} average, up {}",
                    rate(s.hashrate),
                    rate(s.hashrate_average),
                    duration(s.uptime_seconds)
                )),
            ]),
        ])
        .block(Block::bordered().title(title))
    }

    fn devices(&self) -> Table<'_> {
        let header = Row::new([
            "#",
            "Device",
            "Rate",
            "Hashes",
            "HW errors",
            "Errors",
            "Temp",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows = self.snapshot.devices.iter().map(|d| {
            let hw = Span::styled(
                d.hw_errors.to_string(),
                if d.hw_errors > 0 {
                    Tone::Bad.style()
                } else {
                    Style::new()
                },
            );
            Row::new(vec![
                Line::raw(d.index.to_string()),
                Line::raw(d.name.clone()),
                Line::raw(rate(d.hashrate)),
                Line::raw(count(d.hashes)),
                Line::from(hw),
                Line::raw(d.errors.to_string()),
                Line::raw(temperature(d)),
            ])
        });
        Table::new(
            rows,
            [
                Constraint::Length(3),
                Constraint::Fill(1),
                Constraint::Length(13),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(7),
                Constraint::Length(7),
            ],
        )
        .header(header)
        .block(Block::bordered().title(" Devices "))
    }

    fn event_list(&self, rows: usize) -> Paragraph<'_> {
        let skip = self.events.len().saturating_sub(rows);
        let lines: Vec<Line<'_>> = self
            .events
            .iter()
            .skip(skip)
            .map(|(time, text, tone)| {
                let stamp = time.map_or_else(|| " ".repeat(8), clock);
                Line::from(vec![
                    Span::styled(stamp, Style::new().fg(Color::DarkGray)),
                    Span::raw(" "),
                    Span::styled(text.as_str(), tone.style()),
                ])
            })
            .collect();
        Paragraph::new(lines).block(Block::bordered().title(" Events (UTC) "))
    }
}

/// One line for the event list, or None for events that only feed the counters.
fn describe(event: &MinerEvent) -> Option<(String, Tone)> {
    let kind = |block: bool| if block { "block" } else { "share" };
    Some(match event {
        MinerEvent::Connected { url } => (format!("connected to {url}"), Tone::Good),
        MinerEvent::Disconnected { url, reason } => (format!("lost {url}: {reason}"), Tone::Bad),
        MinerEvent::NewJob {
            job, clean, height, ..
        } => (
            format!(
                "new job {job}{}{}",
                height
                    .map(|h| format!(" at height {h}"))
                    .unwrap_or_default(),
                if *clean { " (clean)" } else { "" }
            ),
            Tone::Plain,
        ),
        MinerEvent::Difficulty { difficulty } => (format!("difficulty {difficulty}"), Tone::Plain),
        MinerEvent::Accepted {
            job, hash, block, ..
        } => (
            format!("accepted {} (job {job}) {hash}", kind(*block)),
            Tone::Good,
        ),
        MinerEvent::Rejected {
            job,
            hash,
            reason,
            stale,
            ..
        } => (
            format!(
                "{} (job {job}): {reason} {hash}",
                if *stale { "stale" } else { "rejected" }
            ),
            Tone::Bad,
        ),
        MinerEvent::Error { message } => (format!("error: {message}"), Tone::Bad),
        MinerEvent::Tuned { device, nonces, .. } => {
            (format!("{device}: {nonces} nonces per scan"), Tone::Plain)
        }
        MinerEvent::Api { url } => (format!("status API on {url}/summary"), Tone::Plain),
        MinerEvent::CgminerApi { addr } => (format!("cgminer API on {addr}"), Tone::Plain),
        MinerEvent::Hashing { .. }
        | MinerEvent::Found { .. }
        | MinerEvent::Status { .. }
        | MinerEvent::Summary { .. } => return None,
        // Events added later show as their JSON until they get their own line.
        #[allow(unreachable_patterns)]
        other => (
            serde_json::to_string(other).unwrap_or_default(),
            Tone::Plain,
        ),
    })
}

/// Degrees Celsius when the device reports them, else `-`. Read by field name, so the view
/// works with and without temperature support in [`DeviceStatus`].
fn temperature(device: &DeviceStatus) -> String {
    serde_json::to_value(device)
        .ok()
        .and_then(|v| v.get("temperature_c").and_then(serde_json::Value::as_f64))
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.0} °C"))
}

/// Hashes per second with a unit that keeps the number short.
fn rate(hashes_per_second: f64) -> String {
    const UNITS: [&str; 6] = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
    let mut value = hashes_per_second.max(0.0);
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// A count with a metric suffix (`12.3M`).
#[allow(clippy::cast_precision_loss)]
fn count(n: u64) -> String {
    const UNITS: [&str; 5] = ["k", "M", "G", "T", "P"];
    if n < 10_000 {
        return n.to_string();
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// `1h 02m 03s`, `2m 03s`, `3s`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// `HH:MM:SS` (UTC) of a Unix time.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn clock(time: f64) -> String {
    let s = time.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// Where log lines go: stderr, or the live view's event list while the view covers the
/// terminal that stderr also writes to.
pub struct LogWriter;

/// One log line on its way: to stderr, or collected and handed to the view when dropped.
pub enum LogLine {
    Stderr(io::Stderr),
    View(Vec<u8>, Sender<Update>),
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        match &*LOG_SINK.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => LogLine::View(Vec::new(), tx.clone()),
            None => LogLine::Stderr(io::stderr()),
        }
    }
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            LogLine::Stderr(err) => err.write(bytes),
            LogLine::View(line, _) => {
                line.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LogLine::Stderr(err) => err.flush(),
            LogLine::View(..) => Ok(()),
        }
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if let LogLine::View(line, tx) = self {
            let text = without_escapes(&String::from_utf8_lossy(line));
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let _ = tx.send(Update::Log(line.trim().to_owned()));
            }
        }
    }
}

/// `text` without terminal escape sequences (log lines are coloured for a terminal) or other
/// control characters.
fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                // A CSI sequence ends at its first byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\n' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::mining::status::PoolStatus;

    fn screen(view: &View, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|f| view.render(f)).expect("drawn");
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn the_view_shows_pool_shares_devices_and_events() {
        let mut view = View {
            snapshot: Snapshot {
                version: "0.1.0".into(),
                uptime_seconds: 83.0,
                hashrate: 12_345_678.0,
                hashrate_average: 11_900_000.0,
                pool: PoolStatus {
                    url: "stratum+tcp://pool.example:3333".into(),
                    connected: true,
                    difficulty: Some(0.5),
                    job: Some("7a".into()),
                    height: Some(812),
                    job_age_seconds: Some(4.2),
                    last_error: None,
                },
                shares: Stats {
                    accepted: 12,
                    rejected: 1,
                    stale: 2,
                    found: 15,
                    ..Stats::default()
                },
                devices: vec![
                    DeviceStatus {
                        index: 0,
                        name: "gpu:0 Radeon".into(),
                        hashrate: 1.5e9,
                        hashes: 3_000_000_000,
                        hw_errors: 3,
                        ..DeviceStatus::default()
                    },
                    DeviceStatus {
                        index: 1,
                        name: "cpu".into(),
                        hashrate: 2.5e6,
                        hashes: 9_999,
                        ..DeviceStatus::default()
                    },
                ],
                pools: Vec::new(),
            },
            ..View::default()
        };
        view.push_event(&Timed {
            time: 3600.0 * 5.0 + 61.0,
            event: MinerEvent::Rejected {
                job: "7a".into(),
                nonce: 1,
                hash: "00ab".into(),
                reason: "job not found".into(),
                stale: true,
            },
        });
        assert!(!view.push_event(&Timed {
            time: 0.0,
            event: MinerEvent::Hashing { job: "7a".into() },
        }));
        let text = screen(&view, 100, 20);
        for expected in [
            "stratum+tcp://pool.example:3333  connected  difficulty 0.5",
            "7a at height 812, 4s old",
            "accepted 12  rejected 1  stale 2  found 15  blocks 0",
            "12.35 MH/s now, 11.90 MH/s average, up 1m 23s",
            "gpu:0 Radeon",
            "1.50 GH/s",
            "3.0G",
            "2.50 MH/s",
            "9999",
            "05:01:01 stale (job 7a): job not found 00ab",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        let device_line = text.lines().find(|l| l.contains("Radeon")).expect("line");
        let cells: Vec<&str> = device_line
            .trim_matches(|c| c == '│' || c == ' ')
            .split_whitespace()
            .collect();
        assert_eq!(
            cells.last(),
            Some(&"-"),
            "no temperature yet: {device_line}"
        );
        assert!(cells.contains(&"3"), "hardware errors: {device_line}");
    }

    #[test]
    fn the_final_counts_replace_the_last_snapshot_and_the_title_says_stopped() {
        let mut view = View::default();
        view.push_event(&Timed {
            time: 0.0,
            event: MinerEvent::Summary {
                url: String::new(),
                device: "cpu".into(),
                seconds: 1.0,
                hashrate: 1.0,
                stats: Stats {
                    accepted: 9,
                    ..Stats::default()
                },
            },
        });
        let text = screen(&view, 80, 16);
        assert!(text.contains("accepted 9"), "{text}");
        assert!(text.contains("peerhash mine: stopped"), "{text}");
    }

    #[test]
    fn a_lost_pool_is_shown_with_its_reason() {
        let view = View {
            snapshot: Snapshot {
                version: "0.1.0".into(),
                pool: PoolStatus {
                    url: "stratum+tcp://127.0.0.1:1".into(),
                    last_error: Some("connection refused".into()),
                    ..PoolStatus::default()
                },
                ..Snapshot::default()
            },
            ..View::default()
        };
        let text = screen(&view, 80, 12);
        assert!(text.contains("not connected: connection refused"), "{text}");
    }

    #[test]
    fn units_and_clock() {
        assert_eq!(rate(0.0), "0.00 H/s");
        assert_eq!(rate(999.0), "999.00 H/s");
        assert_eq!(rate(1_000.0), "1.00 kH/s");
        assert_eq!(rate(2.5e12), "2.50 TH/s");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_300), "12.3k");
        assert_eq!(count(4_500_000_000), "4.5G");
        assert_eq!(duration(3.9), "3s");
        assert_eq!(duration(3_723.0), "1h 02m 03s");
        assert_eq!(clock(86_400.0 + 3_661.0), "01:01:01");
    }

    #[test]
    fn log_lines_lose_their_colour_codes() {
        assert_eq!(
            without_escapes("\x1b[33m WARN\x1b[0m pool gone\r\n"),
            " WARN pool gone\n"
        );
    }

    #[test]
    fn q_and_ctrl_c_quit_and_plain_c_does_not() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Enter, KeyModifiers::NONE)));
    }
}
