//! Egress control for yt-dlp (issue 12): an in-process HTTP proxy that every yt-dlp run is
//! pointed at (`--proxy`), so the address rule of download URLs holds for every connection
//! yt-dlp makes while it runs — also for a redirect or a playlist item seen only then.
//!
//! The rule ([`EgressPolicy`]), the same as the queue-time URL check's: the host must be on
//! the download allow-list; an IP literal on the list is the operator's explicit choice and is
//! let through as it is (that is how tests and LAN mirrors work); a name must resolve only to
//! public addresses ([`is_public`]), and the connection goes to an address that was checked
//! (the resolution is pinned, so a second lookup cannot rebind it).
//!
//! The proxy speaks what yt-dlp's HTTP stack sends to an HTTP proxy: `CONNECT host:port` for
//! https (then bytes both ways), and absolute-form requests (`GET http://host/path`) for
//! plain http, passed on in origin form. A refused target gets `403 Forbidden` with the
//! reason; yt-dlp then fails the download with that error. Every refusal is logged and
//! counted in `medianest_egress_refusals_total`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest request head (request line and headers) the proxy reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Which hosts yt-dlp may reach, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed_hosts: Vec<String>,
}

impl EgressPolicy {
    /// A policy allowing `allowed_hosts` (lower-case host names or IP literals, as the
    /// download allow-list holds them).
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
        }
    }

    /// Where a connection to `host:port` may go: the checked address.
    ///
    /// # Errors
    /// Why it may not: the host is off the allow-list, cannot be resolved, or resolves to an
    /// address that is not public.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let host = host.trim().trim_matches(['[', ']']).to_ascii_lowercase();
        if !self.allowed_hosts.contains(&host) {
            return Err(format!("{host} is not on the download allow-list"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{host} cannot be resolved: {e}"))?
            .collect();
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, which is not public",
                private.ip()
            ));
        }
        Ok(addresses[0])
    }
}

/// A running proxy on `127.0.0.1` (random port). Stops when dropped.
#[derive(Debug)]
pub struct EgressProxy {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EgressProxy {
    /// Starts a proxy enforcing `policy`.
    ///
    /// # Errors
    /// When no local port can be bound.
    pub async fn start(policy: EgressPolicy) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let policy = Arc::new(policy);
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let policy = Arc::clone(&policy);
                tokio::spawn(async move { serve(client, &policy).await });
            }
        });
        Ok(Self { addr, server })
    }

    /// The proxy URL to give yt-dlp (`--proxy`): `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One client connection: read the head, check the target, connect, pass bytes both ways.
async fn serve(mut client: TcpStream, policy: &EgressPolicy) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0_u8; 4096];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_HEAD_BYTES {
            return refuse(&mut client, 431, "request head too large").await;
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let Ok(text) = std::str::from_utf8(&head[..end]) else {
        return refuse(&mut client, 400, "request head is not UTF-8").await;
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("HTTP/1.1"),
    );
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (host, port, origin_form) = if connect {
        match target.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0), String::new()),
            None => return refuse(&mut client, 400, "CONNECT needs host:port").await,
        }
    } else {
        match url::Url::parse(target) {
            Ok(url) if url.scheme() == "http" => {
                let origin = match url.query() {
                    Some(query) => format!("{}?{query}", url.path()),
                    None => url.path().to_string(),
                };
                (
                    url.host_str().unwrap_or_default().to_string(),
                    url.port_or_known_default().unwrap_or(80),
                    origin,
                )
            }
            _ => return refuse(&mut client, 400, "only CONNECT and absolute http URLs").await,
        }
    };
    let upstream = match policy.resolve(&host, port).await {
        Ok(upstream) => upstream,
        Err(reason) => {
            tracing::warn!(%host, port, %reason, "yt-dlp connection refused");
            metrics::counter!("medianest_egress_refusals_total").increment(1);
            return refuse(&mut client, 403, &reason).await;
        }
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return refuse(&mut client, 502, "the host cannot be reached").await;
    };
    if connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else {
        let rest = &text[request_line.len()..];
        let rewritten = format!("{method} {origin_form} {version}{rest}");
        if server.write_all(rewritten.as_bytes()).await.is_err() {
            return;
        }
    }
    if server.write_all(&head[end..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

async fn refuse(client: &mut TcpStream, status: u16, reason: &str) {
    let phrase = match status {
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Bad Request",
    };
    let answer = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
/// documentation, benchmarking, multicast, broadcast, reserved or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address: judge that one.
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0; 6] {
        return is_public_v4(embedded(s[6], s[7])); // IPv4-compatible ::a.b.c.d
    }
    if s[0] == 0x0064 && s[1] == 0xff9b {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    !(ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local
        || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_reserved_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
            "2001:db8::1",
            "::7f00:1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001::1",
            "fec0::1",
            "100::1",
            "192.0.0.8",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "142.250.185.78",
            "8.8.8.8",
            "2a00:1450:4001:82a::200e",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }
}
