//! Behind a reverse proxy: the real client's address, taken from what a
//! proxy the server trusts says, and from nobody else.
//!
//! A connection whose TCP peer is one of
//! [`ServerBuilder::trusted_proxies`] may say who it carries:
//!
//! - on any port, by a PROXY protocol v1 line before anything else
//!   (`PROXY TCP4 203.0.113.7 10.0.0.2 51234 9000\r\n`; nginx's `stream`
//!   module sends it with `proxy_protocol on;`): the address with its port;
//! - at a WebSocket upgrade, by `X-Forwarded-For` (the right-most entry
//!   that is not itself a trusted proxy) or else `X-Real-IP`: the address
//!   with port 0, since HTTP proxies do not pass the client's port.
//!
//! The address then names the connection in BUSY, `queue` and holders
//! messages and is what `Peer::peer_addr` and `Ctx::peer_addr` report.
//! From any other peer these are ignored (a client cannot claim an
//! address by sending the header itself).

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{ServerBuilder, Shared};

/// The longest PROXY v1 line (the protocol's own bound).
const MAX_LINE: usize = 107;

impl ServerBuilder {
    /// The addresses of reverse proxies (nginx, a load balancer) whose word
    /// on the real client address is taken: a PROXY protocol v1 line at the
    /// start of a connection, or `X-Forwarded-For` / `X-Real-IP` at a
    /// WebSocket upgrade (see docs/DEPLOY.md, "Behind a proxy"). That
    /// address then names the connection in BUSY, `queue` and holders
    /// messages and is what [`Peer::peer_addr`](crate::Peer::peer_addr)
    /// and [`Ctx::peer_addr`](crate::Ctx::peer_addr) report (port 0 when
    /// it came from an HTTP header). Connections from other addresses are
    /// named by their own address, whatever they send. Default: none.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().map(canonical).collect();
        self
    }
}

/// An IPv4-mapped IPv6 address as IPv4, so both spellings match.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is a trusted proxy.
pub(crate) fn trusted(list: &Arc<[IpAddr]>, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    list.contains(&ip)
}

/// At accept: a trusted proxy's PROXY v1 line, if it sends one. `Ok(None)`:
/// not from a trusted proxy, or no PROXY line (nothing is consumed);
/// `Err`: a trusted proxy sent a broken line or nothing in time: drop it.
pub(crate) fn accept(shared: &Shared, stream: &TcpStream) -> Result<Option<SocketAddr>, ()> {
    let list = &shared.config.trusted_proxies;
    if list.is_empty() {
        return Ok(None);
    }
    match stream.peer_addr() {
        Ok(a) if trusted(list, a.ip()) => {}
        _ => return Ok(None),
    }
    let tick = shared.config.limits.tick();
    let deadline = Instant::now()
        + shared
            .config
            .limits
            .idle_timeout
            .unwrap_or(Duration::from_secs(10));
    // Peek: a proxy that sends no PROXY line leaves its bytes in place.
    let mut head = [0u8; 6];
    loop {
        if shared.is_stopping() || Instant::now() >= deadline {
            return Err(());
        }
        let _ = stream.set_read_timeout(Some(tick));
        match stream.peek(&mut head) {
            Ok(0) => return Err(()),
            Ok(n) if head[..n] != b"PROXY "[..n] => {
                return Ok(None);
            }
            Ok(6) => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if is_tick(&e) => {}
            Err(_) => return Err(()),
        }
    }
    // The line, a byte at a time (never past its end).
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut s = stream;
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_LINE || Instant::now() >= deadline {
            return Err(());
        }
        match s.read(&mut b) {
            Ok(0) => return Err(()),
            Ok(_) => line.push(b[0]),
            Err(e) if is_tick(&e) => {}
            Err(_) => return Err(()),
        }
    }
    let _ = stream.set_read_timeout(Some(tick));
    parse_proxy_v1(&line).ok_or(())
}

fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` → `SRC:SPORT`;
/// `PROXY UNKNOWN ...` → `None` (the proxy's own address stands).
fn parse_proxy_v1(line: &[u8]) -> Option<Option<SocketAddr>> {
    let text = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
    let mut parts = text.split(' ');
    if parts.next()? != "PROXY" {
        return None;
    }
    match parts.next()? {
        "UNKNOWN" => Some(None),
        "TCP4" | "TCP6" => {
            let src: IpAddr = parts.next()?.parse().ok()?;
            let _dst: IpAddr = parts.next()?.parse().ok()?;
            let sport: u16 = parts.next()?.parse().ok()?;
            let _dport: u16 = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            Some(Some(SocketAddr::new(canonical(src), sport)))
        }
        _ => None,
    }
}

/// At a WebSocket upgrade from a trusted proxy: the client address its
/// headers name. `forwarded_for`: every `X-Forwarded-For` value in order;
/// the right-most entry that is not a trusted proxy is the client (entries
/// to its left were written by the client or by proxies not trusted).
/// Else `X-Real-IP`. Unparsable entries end the walk (nothing is taken).
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) fn from_headers(
    list: &Arc<[IpAddr]>,
    forwarded_for: &[&[u8]],
    real_ip: Option<&[u8]>,
) -> Option<IpAddr> {
    let entries: Vec<&str> = forwarded_for
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if !entries.is_empty() {
        for e in entries.iter().rev() {
            let ip = parse_ip(e)?;
            if !trusted(list, ip) {
                return Some(ip);
            }
        }
        // Every hop is a trusted proxy: the first one is the client.
        return parse_ip(entries[0]);
    }
    parse_ip(std::str::from_utf8(real_ip?).ok()?.trim())
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`,
/// `[2001:db8::1]`, or either with a port.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ips: &[&str]) -> Arc<[IpAddr]> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn proxy_v1_lines() {
        assert_eq!(
            parse_proxy_v1(b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 9000\r\n"),
            Some(Some("203.0.113.7:51234".parse().unwrap()))
        );
        assert_eq!(
            parse_proxy_v1(b"PROXY TCP6 2001:db8::7 2001:db8::2 4000 9000\r\n"),
            Some(Some("[2001:db8::7]:4000".parse().unwrap()))
        );
        assert_eq!(parse_proxy_v1(b"PROXY UNKNOWN\r\n"), Some(None));
        assert_eq!(parse_proxy_v1(b"PROXY TCP4 x 10.0.0.2 1 2\r\n"), None);
        assert_eq!(
            parse_proxy_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            None
        );
        assert_eq!(parse_proxy_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), None);
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_hop() {
        let l = list(&["127.0.0.1", "10.0.0.9"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(from_headers(&l, &[b"203.0.113.7"], None), ip("203.0.113.7"));
        // A client that writes its own header gets its claim skipped.
        assert_eq!(
            from_headers(&l, &[b"6.6.6.6, 203.0.113.7"], None),
            ip("203.0.113.7")
        );
        assert_eq!(
            from_headers(&l, &[b"6.6.6.6", b"203.0.113.7, 10.0.0.9"], None),
            ip("203.0.113.7")
        );
        assert_eq!(
            from_headers(&l, &[], Some(b" 198.51.100.2 ")),
            ip("198.51.100.2")
        );
        assert_eq!(
            from_headers(&l, &[b"[2001:db8::1]:443"], None),
            ip("2001:db8::1")
        );
        assert_eq!(from_headers(&l, &[b"junk"], Some(b"1.2.3.4")), None);
        assert_eq!(from_headers(&l, &[], None), None);
        assert!(trusted(&l, "::ffff:127.0.0.1".parse().unwrap()));
    }
}
