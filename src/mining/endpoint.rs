//! URLs of nodes and pools: taken apart once (IPv6 literals in brackets, credentials in the
//! user-info part), and masked before any of them reaches a message.

/// A `SCHEME://[USER[:PASS]@]HOST:PORT[/PATH]` URL taken apart.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: &'static str,
    /// Without brackets, even for an IPv6 literal.
    host: String,
    port: u16,
    /// Starts with `/`; `/` when the URL had none.
    path: String,
    /// Credentials given in the URL itself.
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.url())
    }
}

impl Endpoint {
    /// Parses `url` with the given scheme (`http`, `stratum+tcp`); `None` if it does not fit.
    #[must_use]
    pub fn parse(url: &str, scheme: &'static str) -> Option<Self> {
        let rest = url.strip_prefix(scheme)?.strip_prefix("://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((info, hostport)) => (Some(info), hostport),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, after.strip_prefix(':')?)
        } else {
            hostport.rsplit_once(':')?
        };
        if host.is_empty() || host.contains([':', '[', ']']) && !hostport.starts_with('[') {
            return None;
        }
        let (user, pass) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(info.to_owned()), None),
            },
            None => (None, None),
        };
        Some(Self {
            scheme,
            host: host.to_owned(),
            port: port.parse().ok()?,
            path: path.to_owned(),
            user,
            pass,
        })
    }

    /// The host as a URL writes it (IPv6 literals in brackets) with the port.
    #[must_use]
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host without brackets and the port, to connect to.
    #[must_use]
    pub fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URL without credentials: safe for messages. A bare `/` path is left out of pool URLs.
    #[must_use]
    pub fn url(&self) -> String {
        let path = if self.scheme == "http" || self.path != "/" {
            self.path.as_str()
        } else {
            ""
        };
        format!("{}://{}{path}", self.scheme, self.authority())
    }

    /// The same server at another path (a long-poll path the node advertised).
    #[must_use]
    pub fn url_at(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.authority())
    }
}

/// `url` with any password in it replaced by `***`, whether or not the URL is otherwise valid:
/// the text every message about a URL the user typed must use.
#[must_use]
pub fn mask(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user = authority[..at].split_once(':').map_or("", |(user, _)| user);
    let masked = if user.is_empty() {
        "***".to_owned()
    } else {
        format!("{user}:***")
    };
    format!("{}{masked}{}", &url[..start], &url[start + at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ipv6_literals_paths_and_credentials() {
        let plain = Endpoint::parse("http://127.0.0.1:18443", "http").expect("valid");
        assert_eq!(plain.url(), "http://127.0.0.1:18443/");
        assert_eq!(plain.host_port(), ("127.0.0.1", 18443));
        let v6 = Endpoint::parse("http://[::1]:18443/wallet", "http").expect("valid");
        assert_eq!(v6.host_port(), ("::1", 18443));
        assert_eq!(v6.url(), "http://[::1]:18443/wallet");
        assert_eq!(v6.url_at("/?longpoll=1"), "http://[::1]:18443/?longpoll=1");
        let login = Endpoint::parse(
            "stratum+tcp://alice:s3cret@pool.example:3333",
            "stratum+tcp",
        )
        .expect("valid");
        assert_eq!(login.user.as_deref(), Some("alice"));
        assert_eq!(login.pass.as_deref(), Some("s3cret"));
        assert_eq!(login.url(), "stratum+tcp://pool.example:3333");
        assert!(!format!("{login:?}").contains("s3cret"));
        for bad in [
            "https://127.0.0.1:1",
            "http://127.0.0.1",
            "http://:1",
            "http://::1:1",
            "http://[::1]",
            "http://[nothost]:1",
            "http://127.0.0.1:99999",
            "stratum+tcp://127.0.0.1:1",
        ] {
            assert!(Endpoint::parse(bad, "http").is_none(), "{bad}");
        }
    }

    #[test]
    fn masks_passwords_in_any_url() {
        assert_eq!(
            mask("http://alice:PASSWORD@host:8332/x@y"),
            "http://alice:***@host:8332/x@y"
        );
        assert_eq!(
            mask("stratum+tcp://w:p:q@[::1]:3333"),
            "stratum+tcp://w:***@[::1]:3333"
        );
        assert_eq!(mask("http://token@host:1"), "http://***@host:1");
        assert_eq!(mask("ftp://u:PASSWORD@h"), "ftp://u:***@h");
        assert_eq!(mask("http://host:1/a"), "http://host:1/a");
        assert_eq!(mask("no scheme u:p@h"), "no scheme u:p@h");
    }
}
