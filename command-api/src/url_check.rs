//! The network half of the download URL rule (issue 4): a URL is refused with 422 before
//! anything runs when it leaves the allow-list on any redirect hop, or when its host is a
//! name that resolves to a private, loopback, link-local or otherwise non-public address
//! (a rebinding or internal-service trick).
//!
//! The allow-list itself (scheme, host, no credentials, no ambiguous characters) is the
//! `download` aggregate's rule ([`DownloadServices::check_url`]); this module applies it to
//! every hop. An IP literal that is itself on the allow-list is the operator's explicit
//! choice and is not checked for privacy (that is how tests and LAN mirrors are allowed);
//! names are. Each hop's request goes to the addresses that were checked (the resolution is
//! pinned, no proxy), with redirects not followed by the HTTP client but one by one here, at
//! most [`MAX_REDIRECTS`]. This covers the URL as queued; yt-dlp resolves and follows again
//! when it runs (docs/decisions.md, "YouTube downloads").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::http::StatusCode;
use medianest_domain::download::DownloadServices;
use medianest_http::ApiError;
use url::Url;

/// The most redirects followed before a URL is refused.
pub const MAX_REDIRECTS: usize = 5;

/// Checks download URLs against the allow-list on every hop.
#[derive(Debug, Clone)]
pub struct UrlCheck {
    services: DownloadServices,
    timeout: Duration,
}

impl UrlCheck {
    /// A check with the allow-list of `services`; `timeout` bounds each hop's request.
    pub fn new(services: DownloadServices, timeout: Duration) -> Self {
        Self { services, timeout }
    }

    /// Follows `url`'s redirects (HEAD, or GET when HEAD is refused), checking each hop.
    ///
    /// # Errors
    /// 422 `download-url-refused` (with `field: url` and the refused `hop`) for a hop off the
    /// allow-list, a private address, too many redirects or a host that does not resolve;
    /// 503 when the site cannot be reached.
    pub async fn check(&self, url: &str) -> Result<(), ApiError> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let parsed = self.hop(&current)?;
            let addrs = self.resolve(&parsed).await?;
            match self.next_hop(&parsed, &addrs).await? {
                Some(location) => current = location,
                None => return Ok(()),
            }
        }
        Err(refused(
            &current,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// One hop against the allow-list, as the aggregate checks it.
    fn hop(&self, url: &str) -> Result<Url, ApiError> {
        let checked = self
            .services
            .check_url(url)
            .map_err(|e| refused(url, e.to_string()))?;
        Url::parse(&checked).map_err(|e| refused(url, e.to_string()))
    }

    /// The addresses to connect to: an allow-listed IP literal as is; a name's addresses,
    /// every one of which must be public.
    async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, ApiError> {
        let port = url.port_or_known_default().unwrap_or(443);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(url::Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(url::Host::Domain(name)) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| {
                        let text = e.to_string();
                        if text.contains("Temporary failure") || text.contains("try again") {
                            ApiError::unavailable(
                                format!("{name} cannot be resolved now: {text}"),
                                30,
                            )
                        } else {
                            refused(url.as_str(), format!("the host does not resolve: {text}"))
                        }
                    })?
                    .collect();
                if addrs.is_empty() {
                    return Err(refused(url.as_str(), "the host does not resolve"));
                }
                if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(refused(
                        url.as_str(),
                        format!("the host resolves to a private address ({})", private.ip()),
                    ));
                }
                Ok(addrs)
            }
            None => Err(refused(url.as_str(), "has no host")),
        }
    }

    /// Asks the hop (resolution pinned to `addrs`) and answers its redirect target, if any.
    async fn next_hop(&self, url: &Url, addrs: &[SocketAddr]) -> Result<Option<String>, ApiError> {
        // No proxy: the request must go to the addresses that were checked.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout);
        if let Some(url::Host::Domain(name)) = url.host() {
            builder = builder.resolve_to_addrs(name, addrs);
        }
        let client = builder.build().map_err(|e| ApiError::internal(&e))?;
        let unreachable = |e: reqwest::Error| {
            ApiError::unavailable(format!("{url} could not be reached: {e}"), 30)
        };
        let mut response = client.head(url.clone()).send().await.map_err(unreachable)?;
        if matches!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            response = client.get(url.clone()).send().await.map_err(unreachable)?;
        }
        if !response.status().is_redirection() {
            return Ok(None);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refused(url.as_str(), "a redirect without a Location"))?;
        let next = url
            .join(location)
            .map_err(|e| refused(location, format!("a redirect to a malformed URL: {e}")))?;
        Ok(Some(next.to_string()))
    }
}

/// 422 `download-url-refused` for `hop`.
fn refused(hop: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "download-url-refused",
        "Download URL refused",
        format!("{hop}: {reason}"),
    )
    .with("field", "url")
    .with("hop", hop)
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
/// documentation, benchmarking, multicast, broadcast, reserved or unspecified).
fn is_public(ip: IpAddr) -> bool {
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
