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
//! most [`MAX_REDIRECTS`]. This covers the URL as queued; when yt-dlp runs, every connection
//! it makes goes through the egress proxy ([`medianest_integrations::egress`]), which applies
//! the same rule (and the same [`is_public`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::StatusCode;
use medianest_domain::download::DownloadServices;
use medianest_http::{ApiError, ProblemType};
use medianest_integrations::egress::is_public;
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
    ApiError::new(ProblemType::DownloadUrlRefused, format!("{hop}: {reason}"))
        .with("field", "url")
        .with("hop", hop)
}
