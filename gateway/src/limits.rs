//! Rate limits: per client IP before authentication, per key weighted by megapixels, and
//! admission control under load. State is shared through the job database (GCRA), so the
//! limits hold across any number of gateways.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use unmark_jobs::limits::{Decision, Rate};

use crate::{ApiError, AppState, request_id};

/// Settings of the rate limits (the `[rate_limit]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per client IP before authentication; `None` turns the layer off.
    pub per_ip: Option<Rate>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Stage backlog at which the lowest-priority plan is turned away with 503; a plan of
    /// priority p is turned away at (p + 1) times this.
    pub admission_queue_depth: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip: Some(Rate {
                per_minute: 6_000,
                burst: 600,
            }),
            trusted_proxies: Vec::new(),
            admission_queue_depth: 200,
        }
    }
}

/// Whether `ip` is inside `block` (`10.0.0.0/8`, `::1/128`, or a bare address).
fn in_block(ip: IpAddr, block: &str) -> bool {
    let (addr, bits) = match block.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (block, None),
    };
    let Ok(net) = addr.trim().parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the last address
/// in `X-Forwarded-For` that is not a trusted proxy.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[String],
) -> Option<IpAddr> {
    let trusted_ip = |ip: IpAddr| trusted.iter().any(|b| in_block(ip, b));
    let peer = peer?;
    if !trusted_ip(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !trusted_ip(*ip))
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer),
    )
}

/// The `RateLimit-*` and `Retry-After` headers of a refusal.
pub(crate) fn refusal(
    status: StatusCode,
    slug: &'static str,
    detail: String,
    decision: &Decision,
    rid: &Option<String>,
) -> ApiError {
    ApiError::new(status, slug, detail)
        .with_request_id(rid.clone())
        .with_header("retry-after", decision.retry_after_secs.max(1))
        .with_header("ratelimit-limit", decision.limit)
        .with_header("ratelimit-remaining", decision.remaining)
        .with_header(
            "ratelimit-reset",
            decision.reset_secs.max(decision.retry_after_secs),
        )
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Spends `cost` tokens of a bucket; a refusal is a 429 that names the layer.
pub(crate) async fn spend(
    state: &AppState,
    layer: &'static str,
    bucket: &str,
    cost: u32,
    rate: Rate,
    what: &str,
    rid: &Option<String>,
) -> Result<Decision, ApiError> {
    let decision = state
        .jobs
        .store()
        .take_tokens(bucket, cost, rate, now_us())
        .await
        .map_err(|e| ApiError::internal(e, rid.clone()))?;
    if decision.allowed {
        return Ok(decision);
    }
    state.metrics.rate_limited(layer);
    Err(refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!(
            "{what} is over its rate of {} tokens per minute (burst {}); this request costs \
             {cost}; retry in {} s",
            rate.per_minute, rate.burst, decision.retry_after_secs
        ),
        &decision,
        rid,
    ))
}

/// Layer 1: per client IP, before the key is looked up.
pub(crate) async fn per_ip(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(rate) = state.config.rate_limit.per_ip else {
        return Ok(next.run(request).await);
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = &state.config.rate_limit.trusted_proxies;
    if let Some(ip) = client_ip(peer, request.headers(), trusted) {
        let rid = request_id(request.headers());
        spend(
            &state,
            "ip",
            &format!("ip:{ip}"),
            1,
            rate,
            &format!("client {ip}"),
            &rid,
        )
        .await?;
    }
    Ok(next.run(request).await)
}

/// What a request costs in rate tokens: one per started megapixel, read from the image's
/// header. An unreadable header, or an image over `limit` megapixels, costs one: the decode
/// stage refuses it from the header, without touching a pixel.
pub(crate) fn cost(image: &[u8], limit: f64) -> u32 {
    let megapixels = image::ImageReader::new(std::io::Cursor::new(image))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map(|(w, h)| f64::from(w) * f64::from(h) / 1e6);
    match megapixels {
        Some(mp) if mp <= limit => mp.ceil().max(1.0) as u32,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".to_owned(), "::1".to_owned()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.7, 198.51.100.2, 10.1.2.3"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        let proxy: IpAddr = "10.9.9.9".parse().unwrap_or_else(|_| unreachable!());
        let stranger: IpAddr = "192.0.2.1".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            "198.51.100.2".parse().ok()
        );
        assert_eq!(
            client_ip(Some(stranger), &headers, &trusted),
            Some(stranger)
        );
        assert!(in_block(
            "::1".parse().unwrap_or_else(|_| unreachable!()),
            "::1"
        ));
        assert!(!in_block(stranger, "10.0.0.0/8"));
        assert!(in_block(stranger, "0.0.0.0/0"));
    }
}
