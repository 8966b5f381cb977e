//! A work source on its own thread: connecting, handshakes and calls that wait for their
//! timeout happen there, so the miner loop (which honours `--duration`, status lines and
//! signals) never waits on the network longer than one poll step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use super::job::Solution;
use super::source::{SourceError, SourceEvent, WorkSource};

/// How long the network thread's source waits per poll: also the longest a found solution
/// waits before it is handed to the source.
const INNER_POLL: Duration = Duration::from_millis(20);

/// A source that must be built on the network thread (building it may call the node).
pub type MakeSource = Box<dyn FnOnce() -> Result<Box<dyn WorkSource + Send>, SourceError> + Send>;

/// What the status calls read without waiting for the network thread.
#[derive(Debug, Clone)]
struct View {
    url: String,
    difficulty: Option<f64>,
    last_error: Option<String>,
}

/// A [`WorkSource`] whose real source runs on its own thread.
pub struct BackgroundSource {
    events: Receiver<Result<Vec<SourceEvent>, SourceError>>,
    solutions: Sender<Solution>,
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    /// A fatal error that arrived behind events still to be handed out.
    fatal: Option<SourceError>,
}

impl BackgroundSource {
    /// Starts the network thread; `url` (without credentials) is shown until the source says more.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    #[must_use]
    pub fn spawn(url: String, make: MakeSource) -> Self {
        let (event_tx, events) = mpsc::channel();
        let (solutions, solution_rx) = mpsc::channel::<Solution>();
        let view = Arc::new(Mutex::new(View {
            url,
            difficulty: None,
            last_error: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared_view, shared_stop) = (Arc::clone(&view), Arc::clone(&stop));
        thread::Builder::new()
            .name("peerhash-network".into())
            .spawn(move || {
                let mut source = match make() {
                    Ok(source) => source,
                    Err(e) => {
                        let _ = event_tx.send(Err(e));
                        return;
                    }
                };
                while !shared_stop.load(Ordering::Relaxed) {
                    while let Ok(solution) = solution_rx.try_recv() {
                        source.submit(solution);
                    }
                    let polled = source.poll(INNER_POLL);
                    *shared_view.lock().unwrap_or_else(PoisonError::into_inner) = View {
                        url: source.url(),
                        difficulty: source.difficulty(),
                        last_error: source.last_error(),
                    };
                    let fatal = polled.is_err();
                    let worth_sending = polled.as_ref().map_or(true, |events| !events.is_empty());
                    if (worth_sending && event_tx.send(polled).is_err()) || fatal {
                        return;
                    }
                }
            })
            .expect("spawning a thread");
        Self {
            events,
            solutions,
            view,
            stop,
            fatal: None,
        }
    }

    fn view(&self) -> View {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for BackgroundSource {
    /// The thread ends after the call in progress; nobody waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl WorkSource for BackgroundSource {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError> {
        if let Some(error) = self.fatal.take() {
            return Err(error);
        }
        let mut events = match self.events.recv_timeout(timeout) {
            Ok(Ok(events)) => events,
            Ok(Err(error)) => return Err(error),
            Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
            Err(RecvTimeoutError::Disconnected) => return Err(SourceError::ThreadGone),
        };
        while let Ok(more) = self.events.try_recv() {
            match more {
                Ok(more) => events.extend(more),
                Err(error) => {
                    self.fatal = Some(error);
                    break;
                }
            }
        }
        Ok(events)
    }

    fn submit(&mut self, solution: Solution) {
        // The thread is gone only after a fatal error, which the next poll reports.
        let _ = self.solutions.send(solution);
    }

    fn url(&self) -> String {
        self.view().url
    }

    fn difficulty(&self) -> Option<f64> {
        self.view().difficulty
    }

    fn last_error(&self) -> Option<String> {
        self.view().last_error
    }
}
