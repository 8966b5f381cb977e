//! The status API: a read-only HTTP server over the miner's [`StatusBoard`].
//!
//! - `GET /` and `GET /summary`: the snapshot as JSON;
//! - `GET /metrics`: the same in Prometheus text format;
//! - anything else: 404, or 405 for a method other than GET and HEAD.
//!
//! It is off unless asked for, and the caller decides the address (127.0.0.1 unless told
//! otherwise): there is no authentication, so it holds nothing secret and changes nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use super::status::StatusBoard;

/// How long a server thread waits for a request before looking at the stop flag.
pub(crate) const STOP_CHECK: Duration = Duration::from_millis(100);

/// The API could not start.
#[derive(Debug, thiserror::Error)]
#[error("status API: cannot listen on {addr}: {reason}")]
pub struct ApiError {
    addr: SocketAddr,
    reason: String,
}

/// A server's thread with its stop flag: dropping it sets the flag and waits for the thread,
/// which looks at the flag at least every [`STOP_CHECK`].
pub(crate) struct ServerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(stop_flag)` on a thread named `name`.
    pub(crate) fn spawn(
        name: &str,
        serve: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(&stopping))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running status API; dropping it stops the server.
pub struct StatusApi {
    addr: SocketAddr,
    _thread: ServerThread,
}

impl StatusApi {
    /// Listens on `addr` (port 0 picks a free one) and serves `board` until dropped.
    ///
    /// # Errors
    /// The address is in use or cannot be bound.
    pub fn start(addr: SocketAddr, board: Arc<StatusBoard>) -> Result<Self, ApiError> {
        let server = Server::http(addr).map_err(|e| ApiError {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().ok_or_else(|| ApiError {
            addr,
            reason: "not an IP socket".into(),
        })?;
        let thread = ServerThread::spawn("peerhash-api", move |stop| serve(&server, &board, stop))
            .map_err(|e| ApiError {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Self {
            addr: bound,
            _thread: thread,
        })
    }

    /// Where it listens (with the port chosen when asked for port 0).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(server: &Server, board: &StatusBoard, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(STOP_CHECK) {
            Ok(Some(request)) => answer(request, board),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("status API: {e}");
                thread::sleep(STOP_CHECK);
            }
        }
    }
}

fn answer(request: Request, board: &StatusBoard) {
    let path = request.url().split('?').next().unwrap_or_default();
    let (status, content_type, body) = if !matches!(request.method(), Method::Get | Method::Head) {
        (
            405,
            "application/json",
            r#"{"error":"read-only API: use GET"}"#.to_owned(),
        )
    } else {
        match path {
            "/" | "/summary" => (
                200,
                "application/json",
                serde_json::to_string(&board.snapshot())
                    .unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#)),
            ),
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                board.snapshot().prometheus(),
            ),
            _ => (
                404,
                "application/json",
                r#"{"error":"not found: try /summary or /metrics"}"#.to_owned(),
            ),
        }
    };
    let mut response = Response::from_string(body).with_status_code(status);
    if let Ok(header) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    if status == 405 {
        if let Ok(header) = Header::from_bytes("Allow", "GET, HEAD") {
            response.add_header(header);
        }
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("status API: answering: {e}");
    }
}
