//! A small blocking JSON-RPC client over HTTP/1.1 (one connection per call, basic auth), with a
//! deadline on every call and a cancel flag checked while waiting, so a long poll can be
//! abandoned at once.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Responses larger than this are refused: a block template with a full mempool is a few MB.
const MAX_RESPONSE: usize = 64 << 20;
/// How often a waiting call looks at its cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed call, with what a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("bad node URL {0:?}: expected http://HOST:PORT[/PATH]")]
    BadUrl(String),
    // The OS reason is part of the message (the miner shows errors with `to_string`), so it is
    // not also a `source`, which would print it twice in an error chain.
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: std::io::Error },
    #[error("talking to {url}: {reason}")]
    Io { url: String, reason: std::io::Error },
    #[error("{url} did not answer {method} within {seconds} s")]
    Timeout {
        url: String,
        method: String,
        seconds: u64,
    },
    #[error("{url} refused the user name or password (HTTP 401)")]
    Unauthorized { url: String },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url} sent a malformed answer: {message}")]
    Malformed { url: String, message: String },
    #[error("{url}: {method} failed: {message} (code {code})")]
    Rpc {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
    #[error("cancelled")]
    Cancelled,
}

impl RpcError {
    /// Errors that mean the node is (for now) unreachable, so retrying later may work.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Io { .. } | Self::Timeout { .. } | Self::Http { .. } => {
                true
            }
            // Not connected, still downloading blocks, warming up: a node that is starting.
            Self::Rpc { code, .. } => matches!(code, -9 | -10 | -28),
            _ => false,
        }
    }
}

/// A node's JSON-RPC endpoint and credentials. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct RpcClient {
    host: String,
    port: u16,
    path: String,
    auth: String,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcClient({})", self.url())
    }
}

/// What a call returned, with the long-poll path the node advertised.
#[derive(Debug)]
pub struct RpcReply {
    pub result: Value,
    pub long_polling: Option<String>,
}

impl RpcClient {
    /// # Errors
    /// A URL that is not `http://HOST:PORT[/PATH]`.
    pub fn new(url: &str, user: &str, pass: &str) -> Result<Self, RpcError> {
        let bad = || RpcError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            auth: base64(format!("{user}:{pass}").as_bytes()),
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The URL without credentials, for messages.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }

    /// Calls `method` at the endpoint's own path.
    ///
    /// # Errors
    /// Network failures, timeouts, HTTP errors, malformed answers and RPC errors.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<RpcReply, RpcError> {
        self.call_at(&self.path, method, params, timeout, None)
    }

    /// Calls `method` at `path` (a long-poll path), giving up at `timeout` or when `cancel` is set.
    ///
    /// # Errors
    /// As [`Self::call`], plus [`RpcError::Cancelled`].
    pub fn call_at(
        &self,
        path: &str,
        method: &str,
        params: Value,
        timeout: Duration,
        cancel: Option<&AtomicBool>,
    ) -> Result<RpcReply, RpcError> {
        let url = self.url();
        let io = |reason| RpcError::Io {
            url: url.clone(),
            reason,
        };
        let deadline = Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}).to_string();
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|reason| RpcError::Connect {
                url: url.clone(),
                reason,
            })?
            .next()
            .ok_or_else(|| RpcError::BadUrl(url.clone()))?;
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|reason| {
            RpcError::Connect {
                url: url.clone(),
                reason,
            }
        })?;
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(io)?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            self.auth,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 16 << 10];
        loop {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(RpcError::Cancelled);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RpcError::Timeout {
                    url,
                    method: method.to_owned(),
                    seconds: timeout.as_secs(),
                });
            }
            stream
                .set_read_timeout(Some(left.min(CANCEL_CHECK)))
                .map_err(io)?;
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&chunk[..n]);
                    if response.len() > MAX_RESPONSE {
                        return Err(RpcError::Malformed {
                            url,
                            message: format!("answer longer than {MAX_RESPONSE} bytes"),
                        });
                    }
                    if http_complete(&response) {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        if header_end(&response).is_none() {
            // The node went away mid-call (killed, restarting): worth retrying.
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the answer was complete",
            )));
        }
        let parsed = parse_http(&response).map_err(|message| match message {
            HttpFailure::Status(401) => RpcError::Unauthorized { url: url.clone() },
            HttpFailure::Truncated => RpcError::Io {
                url: url.clone(),
                reason: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of the answer",
                ),
            },
            HttpFailure::Status(status) => RpcError::Http {
                url: url.clone(),
                status,
            },
            HttpFailure::Malformed(message) => RpcError::Malformed {
                url: url.clone(),
                message,
            },
        })?;
        let value: Value =
            serde_json::from_slice(&parsed.body).map_err(|e| RpcError::Malformed {
                url: url.clone(),
                message: format!("not JSON: {e}"),
            })?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Rpc {
                url,
                method: method.to_owned(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_owned(),
            });
        }
        tracing::debug!(
            "{method} at {path}: {} ms",
            (timeout - deadline.saturating_duration_since(Instant::now())).as_millis()
        );
        Ok(RpcReply {
            result: value.get("result").cloned().unwrap_or(Value::Null),
            long_polling: parsed.long_polling,
        })
    }
}

struct HttpResponse {
    body: Vec<u8>,
    long_polling: Option<String>,
}

enum HttpFailure {
    Status(u16),
    Truncated,
    Malformed(String),
}

fn header_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// True once headers and a `Content-Length` body are all in.
fn http_complete(data: &[u8]) -> bool {
    let Some(end) = header_end(data) else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..end]);
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| data.len() >= end + length)
}

fn parse_http(data: &[u8]) -> Result<HttpResponse, HttpFailure> {
    let end = header_end(data).ok_or_else(|| {
        HttpFailure::Malformed("connection closed before the HTTP headers ended".into())
    })?;
    let head = String::from_utf8_lossy(&data[..end]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HttpFailure::Malformed("no HTTP status line".into()))?;
    let mut length = None;
    let mut chunked = false;
    let mut long_polling = None;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("x-long-polling") {
            long_polling = Some(value.to_owned());
        }
    }
    if status != 200 {
        return Err(HttpFailure::Status(status));
    }
    let rest = &data[end..];
    let body = if chunked {
        dechunk(rest).ok_or_else(|| HttpFailure::Malformed("bad chunked body".into()))?
    } else if let Some(length) = length {
        rest.get(..length).ok_or(HttpFailure::Truncated)?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { body, long_polling })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("x:secret", "eDpzZWNyZXQ="),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn url_parsing_keeps_the_password_out_of_display() {
        let client = RpcClient::new("http://127.0.0.1:18443", "u", "hunter2").expect("valid");
        assert_eq!(client.url(), "http://127.0.0.1:18443/");
        assert!(!format!("{client:?}").contains("hunter2"));
        assert!(RpcClient::new("https://127.0.0.1:1", "u", "p").is_err());
        assert!(RpcClient::new("http://127.0.0.1", "u", "p").is_err());
        assert!(RpcClient::new("http://u:p@127.0.0.1:1", "u", "p").is_err());
    }

    #[test]
    fn http_parsing_handles_lengths_chunks_and_statuses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Long-Polling: /?longpoll=1\r\n\r\n{}";
        assert!(http_complete(ok));
        let parsed = parse_http(ok).ok().expect("parses");
        assert_eq!(parsed.body, b"{}");
        assert_eq!(parsed.long_polling.as_deref(), Some("/?longpoll=1"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked).ok().expect("parses").body, b"{}");
        assert!(matches!(
            parse_http(b"HTTP/1.1 401 Unauthorized\r\n\r\n"),
            Err(HttpFailure::Status(401))
        ));
        assert!(parse_http(b"garbage").is_err());
        assert!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
