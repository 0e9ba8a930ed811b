//! `Origin` and `Host` checks at the upgrade, so that a web page cannot
//! drive a server it was not meant to reach (cross-origin pages, `file://`
//! pages, DNS rebinding). The rules are stated on
//! [`WsConfig::allowed_origins`](super::WsConfig::allowed_origins) and
//! [`WsConfig::allowed_hosts`](super::WsConfig::allowed_hosts).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One entry of [`WsConfig::allowed_origins`](super::WsConfig::allowed_origins).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum OriginPattern {
    /// `*`: any origin except `null`.
    Any,
    /// `null`: the opaque origin (`file://` pages, sandboxed frames).
    Null,
    /// `scheme://host[:port]`, host possibly `*.suffix`, port possibly `*`.
    Tuple {
        scheme: String,
        host: NameMatch,
        port: PortMatch,
    },
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum NameMatch {
    /// The host exactly (lowercase; IPv6 in brackets).
    Exact(String),
    /// Any host that ends with this (lowercase, starting with `.`), with at
    /// least one more label in front.
    Suffix(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortMatch {
    Any,
    /// The effective port: the explicit one, else the scheme's default.
    Exact(Option<u16>),
}

impl fmt::Debug for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Null => f.write_str("null"),
            Self::Tuple { scheme, host, port } => {
                write!(f, "{scheme}://")?;
                match host {
                    NameMatch::Exact(h) => f.write_str(h)?,
                    NameMatch::Suffix(s) => write!(f, "*{s}")?,
                }
                match port {
                    PortMatch::Any => f.write_str(":*"),
                    PortMatch::Exact(p) if *p == default_port(scheme) => Ok(()),
                    PortMatch::Exact(Some(p)) => write!(f, ":{p}"),
                    PortMatch::Exact(None) => Ok(()),
                }
            }
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// A browser origin as sent in the `Origin` header.
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// `scheme://host[:port]` split into lowercase scheme, lowercase host and
/// the port text (if any). No path, query, user info or trailing `/`.
fn split_origin(s: &str) -> Result<(String, String, Option<&str>), String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not scheme://host[:port]"))?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(format!("{s:?} has no valid scheme"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{s:?} is not an origin: an origin is scheme://host[:port], with no path (not even a trailing /)"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unclosed ["))?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{s:?} has a bad IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{s:?} has text after ]"))?,
            ),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok((scheme.to_ascii_lowercase(), host, port))
}

fn name_ok(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{whole:?} has a bad port"));
    }
    p.parse()
        .map_err(|_| format!("{whole:?} has a port over 65535"))
}

impl OriginPattern {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self::Any);
        }
        if s.eq_ignore_ascii_case("null") {
            return Ok(Self::Null);
        }
        let (scheme, host, port) = split_origin(s)?;
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if !name_ok(suffix) || suffix.starts_with('.') {
                return Err(format!("{s:?}: after *. comes a host name"));
            }
            NameMatch::Suffix(format!(".{suffix}"))
        } else if host.starts_with('[') || name_ok(&host) {
            NameMatch::Exact(host)
        } else {
            return Err(format!(
                "{s:?}: a host is a name, an IP address or *.name (a * only as the first label)"
            ));
        };
        let port = match port {
            Some("*") => PortMatch::Any,
            Some(p) => PortMatch::Exact(Some(parse_port(p, s)?)),
            None => PortMatch::Exact(default_port(&scheme)),
        };
        Ok(Self::Tuple { scheme, host, port })
    }

    fn matches(&self, origin: &Origin) -> bool {
        let Self::Tuple { scheme, host, port } = self else {
            return matches!(self, Self::Any);
        };
        if *scheme != origin.scheme {
            return false;
        }
        let host_ok = match host {
            NameMatch::Exact(h) => *h == origin.host,
            NameMatch::Suffix(s) => {
                origin.host.len() > s.len() && origin.host.ends_with(s.as_str())
            }
        };
        let port_ok = match port {
            PortMatch::Any => true,
            PortMatch::Exact(p) => *p == origin.port.or_else(|| default_port(&origin.scheme)),
        };
        host_ok && port_ok
    }
}

impl Origin {
    fn parse(s: &str) -> Option<Self> {
        let (scheme, host, port) = split_origin(s).ok()?;
        if !host.starts_with('[') && !name_ok(&host) {
            return None;
        }
        let port = match port {
            Some(p) => Some(parse_port(p, s).ok()?),
            None => None,
        };
        Some(Self { scheme, host, port })
    }
}

/// Whether the `Origin` header value `value` is on `list`.
pub(crate) fn origin_allowed(value: &[u8], list: &[OriginPattern]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    let s = s.trim();
    if s.eq_ignore_ascii_case("null") {
        return list.contains(&OriginPattern::Null);
    }
    let Some(origin) = Origin::parse(s) else {
        return false;
    };
    list.iter().any(|p| p.matches(&origin))
}

/// One entry of [`WsConfig::allowed_hosts`](super::WsConfig::allowed_hosts).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `*`: any Host (the check is off).
    Any,
    Ip(IpAddr),
    /// A name, lowercase.
    Name(String),
    /// `*.suffix`: stored as `.suffix`, lowercase.
    Suffix(String),
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(n) => f.write_str(n),
            Self::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

impl HostPattern {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self::Any);
        }
        let bare = s.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(s).parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let lower = s.to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix("*.") {
            if name_ok(suffix) && !suffix.starts_with('.') {
                return Ok(Self::Suffix(format!(".{suffix}")));
            }
        } else if name_ok(&lower) {
            return Ok(Self::Name(lower));
        }
        Err(format!(
            "{s:?} is not a host name, an IP address, *.name or *: allowed hosts have no port \
             (the port of a Host header is not compared)"
        ))
    }
}

/// The host part of a `Host` header (or a request's authority): an IP
/// address or a lowercase name; the port is dropped. `None`: malformed.
enum HostName {
    Ip(IpAddr),
    Name(String),
}

fn parse_host(value: &[u8]) -> Option<HostName> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (inside, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    if s.starts_with('[') {
        return host
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| HostName::Ip(ip.into()));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(HostName::Ip(ip.into()));
    }
    name_ok(host).then(|| HostName::Name(host.to_ascii_lowercase()))
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the `Host` header value names this server: a loopback address,
/// `localhost`, the address the connection arrived on (`local`), or an
/// entry of `list`.
pub(crate) fn host_allowed(value: &[u8], local: Option<IpAddr>, list: &[HostPattern]) -> bool {
    let Some(host) = parse_host(value) else {
        return false;
    };
    match host {
        HostName::Ip(ip) => {
            let ip = unmap(ip);
            ip.is_loopback()
                || local.is_some_and(|l| unmap(l) == ip)
                || list
                    .iter()
                    .any(|p| matches!(p, HostPattern::Any) || *p == HostPattern::Ip(ip))
        }
        HostName::Name(name) => {
            name == "localhost"
                || list.iter().any(|p| match p {
                    HostPattern::Any => true,
                    HostPattern::Ip(_) => false,
                    HostPattern::Name(n) => *n == name,
                    HostPattern::Suffix(s) => name.len() > s.len() && name.ends_with(s.as_str()),
                })
        }
    }
}

/// A header value fit to quote in an error body: escaped, at most 200
/// characters.
pub(crate) fn quote(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(value);
    let mut q: String = s
        .chars()
        .take(200)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().count() > 200 {
        q.push_str("...");
    }
    format!("\"{q}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> Vec<OriginPattern> {
        p.iter().map(|s| OriginPattern::parse(s).unwrap()).collect()
    }

    fn ok(origin: &str, p: &[&str]) -> bool {
        origin_allowed(origin.as_bytes(), &list(p))
    }

    #[test]
    fn exact_origins_case_insensitive_on_scheme_and_host_exact_on_port() {
        let p = ["https://App.Example:8443", "http://localhost:3000"];
        assert!(ok("https://app.example:8443", &p));
        assert!(ok("HTTPS://APP.EXAMPLE:8443", &p));
        assert!(!ok("https://app.example:8444", &p));
        assert!(!ok("https://app.example", &p));
        assert!(!ok("http://app.example:8443", &p));
        assert!(ok("http://localhost:3000", &p));
        assert!(!ok("http://localhost:30000", &p));
        assert!(!ok("http://localhost", &p));
        assert!(!ok("http://localhost.evil.example:3000", &p));
    }

    #[test]
    fn default_ports_are_the_same_origin() {
        assert!(ok("https://a.example", &["https://a.example:443"]));
        assert!(ok("https://a.example:443", &["https://a.example"]));
        assert!(ok("http://a.example:80", &["http://a.example"]));
        assert!(!ok("http://a.example:443", &["http://a.example"]));
    }

    #[test]
    fn wildcards() {
        let p = ["http://localhost:*", "https://*.lab.example"];
        assert!(ok("http://localhost:1", &p));
        assert!(ok("http://localhost", &p));
        assert!(!ok("https://localhost:1", &p));
        assert!(ok("https://a.lab.example", &p));
        assert!(ok("https://a.b.lab.example", &p));
        assert!(!ok("https://lab.example", &p));
        assert!(!ok("https://evil-lab.example", &p));
        assert!(!ok("https://a.lab.example:8443", &p));
        assert!(!ok("http://a.lab.example", &p));
        assert!(ok("https://x.example", &["*"]));
        assert!(!ok("null", &["*"]));
        assert!(ok("null", &["*", "null"]));
        assert!(ok("NULL", &["null"]));
        assert!(!ok("null", &["http://localhost:*"]));
    }

    #[test]
    fn ipv6_origins() {
        let p = ["http://[::1]:8080"];
        assert!(ok("http://[::1]:8080", &p));
        assert!(!ok("http://[::1]:8081", &p));
        assert!(!ok("http://[::2]:8080", &p));
    }

    #[test]
    fn garbage_origins_are_refused() {
        let p = ["*"];
        for o in [
            "",
            "localhost",
            "http://",
            "http://a b",
            "http://a:x",
            "http://a:99999",
            "http://a/",
            "http://u@a",
            "http://[::1",
        ] {
            assert!(!ok(o, &p), "{o:?}");
        }
        assert!(!origin_allowed(b"http://\xff", &list(&p)));
    }

    #[test]
    fn bad_patterns_say_why() {
        for p in [
            "localhost",
            "http://a.example/",
            "http://*",
            "http://a.*.example",
            "http://a:port",
            "http://a:70000",
            "1http://a",
        ] {
            assert!(OriginPattern::parse(p).is_err(), "{p:?}");
        }
        assert!(OriginPattern::parse("http://localhost:*").is_ok());
        assert_eq!(
            format!(
                "{:?}",
                OriginPattern::parse("HTTPS://*.Lab.example:443").unwrap()
            ),
            "https://*.lab.example"
        );
    }

    fn hosts(p: &[&str]) -> Vec<HostPattern> {
        p.iter().map(|s| HostPattern::parse(s).unwrap()).collect()
    }

    #[test]
    fn loopback_localhost_and_the_local_address_always_pass() {
        let local: Option<IpAddr> = Some("192.168.1.5".parse().unwrap());
        for h in [
            "127.0.0.1:9000",
            "127.1.2.3",
            "localhost:9000",
            "LOCALHOST",
            "[::1]:9000",
            "[::1]",
            "[::ffff:127.0.0.1]:1",
            "192.168.1.5:9000",
        ] {
            assert!(host_allowed(h.as_bytes(), local, &[]), "{h:?}");
        }
        for h in [
            "evil.example",
            "evil.example:9000",
            "localhost.",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "192.168.1.6:9000",
            "0.0.0.0:9000",
            "[::2]:9000",
            "",
            "127.0.0.1:",
            "127.0.0.1:x",
            "::1",
            "[::1]x",
            "a b",
            "127.1",
        ] {
            assert!(!host_allowed(h.as_bytes(), local, &[]), "{h:?}");
        }
    }

    #[test]
    fn configured_hosts() {
        let l = hosts(&[
            "Device.Lab.example",
            "*.farm.example",
            "10.0.0.7",
            "[fe80::1]",
        ]);
        assert!(host_allowed(b"device.lab.example:80", None, &l));
        assert!(host_allowed(b"a.farm.example", None, &l));
        assert!(!host_allowed(b"farm.example", None, &l));
        assert!(host_allowed(b"10.0.0.7:9", None, &l));
        assert!(host_allowed(b"[fe80::1]:9", None, &l));
        assert!(!host_allowed(b"lab.example", None, &l));
        assert!(host_allowed(b"anything.example", None, &hosts(&["*"])));
        for bad in [
            "a.example:80",
            "http://a.example",
            "a/b",
            "*",
            "*.",
            "a.*.b",
        ] {
            let r = HostPattern::parse(bad);
            assert_eq!(r.is_ok(), bad == "*", "{bad:?}");
        }
    }

    #[test]
    fn quotes_are_escaped_and_bounded() {
        assert_eq!(quote(b"a\"b\r\n"), "\"a\\\"b\\r\\n\"");
        assert!(quote(&[b'x'; 1000]).len() < 220);
    }
}
