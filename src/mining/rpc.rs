//! A blocking JSON-RPC client over HTTP (ureq), with basic auth and a deadline on every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::endpoint::{self, Endpoint};

/// Responses larger than this are refused: a block template with a full mempool is a few MB.
const MAX_RESPONSE: u64 = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed call, with the URL and method it was about (never with credentials).
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("bad node URL {url:?}: expected http://[USER:PASS@]HOST:PORT[/PATH] (IPv6 as [ADDR])")]
    BadUrl { url: String },
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: {method} failed: {reason}")]
    Transport {
        url: String,
        method: String,
        reason: String,
    },
    #[error("{url} did not answer {method} within {seconds} s")]
    Timeout {
        url: String,
        method: String,
        seconds: u64,
    },
    #[error("{url} refused the user name or password (HTTP 401)")]
    Unauthorized { url: String },
    #[error("{url} answered {method} with HTTP {status}")]
    Http {
        url: String,
        method: String,
        status: u16,
    },
    #[error("{url} sent a malformed answer to {method}: {problem}")]
    Malformed {
        url: String,
        method: String,
        problem: String,
    },
    #[error("{url}: {method} failed: {message} (code {code})")]
    Rpc {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
}

impl RpcError {
    /// Errors that mean the node is (for now) unreachable, so retrying later may work.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::Http { .. } => true,
            // Not connected, still downloading blocks, warming up: a node that is starting.
            Self::Rpc { code, .. } => matches!(code, -9 | -10 | -28),
            _ => false,
        }
    }
}

/// A node's JSON-RPC endpoint and credentials. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct RpcClient {
    endpoint: Endpoint,
    auth: String,
    agent: ureq::Agent,
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
    /// `user` and `pass` unless the URL carries its own (`http://USER:PASS@HOST:PORT`).
    ///
    /// # Errors
    /// A URL that is not `http://[USER:PASS@]HOST:PORT[/PATH]`.
    pub fn new(url: &str, user: &str, pass: &str) -> Result<Self, RpcError> {
        let endpoint = Endpoint::parse(url, "http").ok_or_else(|| RpcError::BadUrl {
            url: endpoint::mask(url),
        })?;
        let (user, pass) = match (&endpoint.user, &endpoint.pass) {
            (Some(user), pass) => (user.as_str(), pass.as_deref().unwrap_or("")),
            (None, _) => (user, pass),
        };
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .build(),
        );
        Ok(Self {
            endpoint,
            auth,
            agent,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The URL without credentials, for messages.
    #[must_use]
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// The path calls go to (`/` unless the URL named one).
    #[must_use]
    pub fn path(&self) -> &str {
        self.endpoint.path()
    }

    /// Calls `method` at the endpoint's own path, giving up after `timeout`.
    ///
    /// # Errors
    /// Network failures, timeouts, HTTP errors, malformed answers and RPC errors.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<RpcReply, RpcError> {
        self.call_at(self.endpoint.path(), method, params, timeout)
    }

    /// Calls `method` at `path` (a long-poll path), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub fn call_at(
        &self,
        path: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<RpcReply, RpcError> {
        let url = self.url();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}).to_string();
        let started = std::time::Instant::now();
        let response = self
            .agent
            .post(self.endpoint.url_at(path))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", format!("Basic {}", self.auth))
            .header("Content-Type", "application/json")
            .send(body);
        let mut response = response.map_err(|e| self.failure(e, method, timeout))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(RpcError::Unauthorized { url });
        }
        let long_polling = response
            .headers()
            .get("x-long-polling")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| self.failure(e, method, timeout))?;
        // Bitcoin Core answers RPC errors with HTTP 500 and a JSON body: the body says more.
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(_) if status != 200 => {
                return Err(RpcError::Http {
                    url,
                    method: method.to_owned(),
                    status,
                })
            }
            Err(e) => {
                return Err(RpcError::Malformed {
                    url,
                    method: method.to_owned(),
                    problem: format!("not JSON: {e}"),
                })
            }
        };
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
        if status != 200 {
            return Err(RpcError::Http {
                url,
                method: method.to_owned(),
                status,
            });
        }
        tracing::debug!("{method} at {path}: {} ms", started.elapsed().as_millis());
        Ok(RpcReply {
            result: value.get("result").cloned().unwrap_or(Value::Null),
            long_polling,
        })
    }

    fn failure(&self, error: ureq::Error, method: &str, timeout: Duration) -> RpcError {
        let url = self.url();
        match error {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed => RpcError::Connect {
                url,
                reason: error.to_string(),
            },
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                RpcError::Connect {
                    url,
                    reason: e.to_string(),
                }
            }
            ureq::Error::Timeout(_) => RpcError::Timeout {
                url,
                method: method.to_owned(),
                seconds: timeout.as_secs().max(1),
            },
            ureq::Error::BodyExceedsLimit(limit) => RpcError::Malformed {
                url,
                method: method.to_owned(),
                problem: format!("answer longer than {limit} bytes"),
            },
            other => RpcError::Transport {
                url,
                method: method.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing_keeps_the_password_out_of_display() {
        let client = RpcClient::new("http://127.0.0.1:18443", "u", "hunter2").expect("valid");
        assert_eq!(client.url(), "http://127.0.0.1:18443/");
        assert!(!format!("{client:?}").contains("hunter2"));
        let inline = RpcClient::new("http://alice:hunter2@[::1]:1/x", "u", "p").expect("valid");
        assert_eq!(inline.url(), "http://[::1]:1/x");
        assert_eq!(
            inline.auth,
            base64::engine::general_purpose::STANDARD.encode("alice:hunter2")
        );
        assert!(!format!("{inline:?}").contains("hunter2"));
        assert!(RpcClient::new("https://127.0.0.1:1", "u", "p").is_err());
        let bad = RpcClient::new("http://alice:hunter2@127.0.0.1", "u", "p")
            .expect_err("no port")
            .to_string();
        assert!(
            bad.contains("alice:***@") && !bad.contains("hunter2"),
            "{bad}"
        );
    }
}
