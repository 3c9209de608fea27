//! Webhook delivery: a job that ends with a `callback_url` is POSTed there as JSON, signed.
//!
//! `Unmark-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with the
//! secret of the job's API key (printed by `unmark keys create`) or `[webhooks] secret` for
//! jobs without one. A receiver checks the signature and that `t` is recent. Failed attempts
//! are retried with exponential backoff up to `max_attempts`; each attempt is logged and the
//! job's record shows where its webhook stands.

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unmark_broker::now_ms;
use unmark_jobs::Jobs;
use unmark_jobs::webhooks::{Attempt, Due};

/// Settings of webhook delivery (the `[webhooks]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Deliver webhooks at all; when off, `callback_url` is only kept with the job.
    pub enabled: bool,
    /// Allow callbacks to loopback, private and link-local addresses (off in production:
    /// a customer must not reach the operator's network through us).
    pub allow_private: bool,
    /// Attempts before a delivery is given up on.
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles after each failure.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Signs webhooks of jobs submitted without a database key.
    pub secret: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private: false,
            max_attempts: 10,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            secret: String::new(),
        }
    }
}

/// Whether an address is one a customer's callback must not reach.
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| private(IpAddr::V4(v4)))
        }
    }
}

/// Checks where a callback URL leads: `Err` names why it may not be used.
pub(crate) async fn check_destination(url: &str, config: &WebhookConfig) -> Result<(), String> {
    if config.allow_private || !config.enabled {
        return Ok(());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("callback_url {url:?} is not http(s)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if url.starts_with("https://") { 443 } else { 80 };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
            (
                h.to_owned(),
                p.trim_start_matches(':').parse().unwrap_or(default_port),
            )
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(default_port)),
            None => (authority.to_owned(), default_port),
        },
    };
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("callback_url host {host:?} does not resolve: {e}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() || addrs.iter().any(|ip| private(*ip)) {
        return Err(format!(
            "callback_url {url:?} leads to a private, loopback or link-local address, which \
             this server does not call"
        ));
    }
    Ok(())
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub(crate) fn signature(secret: &str, unix_secs: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Delivers due webhooks until the process ends.
pub async fn deliver_forever(jobs: Jobs, config: WebhookConfig) {
    if !config.enabled {
        tracing::info!("webhook delivery is off ([webhooks] enabled = false)");
        return;
    }
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks are off: cannot build an HTTP client");
            return;
        }
    };
    loop {
        let now = now_ms() as i64;
        match jobs.store().due_webhooks(now, 16).await {
            Ok(due) => {
                for d in due {
                    let lease = now + config.timeout.as_millis() as i64 + 5_000;
                    if let Ok(true) = jobs.store().claim_webhook(&d, lease).await {
                        attempt(&jobs, &client, &config, d).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read due webhooks"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn attempt(jobs: &Jobs, client: &reqwest::Client, config: &WebhookConfig, due: Due) {
    let store = jobs.store();
    let record = match store.get(&due.job_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job_id = due.job_id, error = %e, "cannot read a job for its webhook");
            return;
        }
    };
    let kind = if record.status == unmark_jobs::JobStatus::Succeeded {
        "job.succeeded"
    } else {
        "job.failed"
    };
    let body = serde_json::json!({ "type": kind, "job": crate::jobs::view(&record) }).to_string();
    let secret = match &due.key_id {
        Some(key) => store.webhook_secret(key).await.ok().flatten(),
        None => None,
    }
    .unwrap_or_else(|| config.secret.clone());
    let unix = (now_ms() / 1000) as u64;
    let outcome = match check_destination(&due.url, config).await {
        Err(why) => Err((None, why, false)),
        Ok(()) => {
            let mut request = client
                .post(&due.url)
                .header("content-type", "application/json")
                .header("unmark-event", kind)
                .header(
                    "unmark-delivery",
                    format!("{}:{}", due.job_id, due.attempts + 1),
                );
            if !secret.is_empty() {
                request = request.header(
                    "unmark-signature",
                    signature(&secret, unix, body.as_bytes()),
                );
            }
            match request.body(body).send().await {
                Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
                Ok(r) => Err((
                    Some(r.status().as_u16()),
                    format!("receiver answered {}", r.status()),
                    true,
                )),
                Err(e) => Err((None, format!("cannot reach the receiver: {e}"), true)),
            }
        }
    };
    let tries = due.attempts + 1;
    let now = now_ms() as i64;
    let result = match &outcome {
        Ok(status) => {
            tracing::info!(
                job_id = due.job_id,
                attempt = tries,
                status,
                "webhook delivered"
            );
            Attempt {
                delivered: true,
                status: Some(*status),
                error: None,
                retry_at_ms: None,
            }
        }
        Err((status, why, retryable)) => {
            let again = *retryable && tries < config.max_attempts;
            let wait = config
                .initial_backoff
                .saturating_mul(1 << (tries - 1).min(16))
                .min(config.max_backoff);
            tracing::warn!(job_id = due.job_id, attempt = tries, error = %why, retry = again, "webhook attempt failed");
            Attempt {
                delivered: false,
                status: *status,
                error: Some(why),
                retry_at_ms: again.then(|| now + wait.as_millis() as i64),
            }
        }
    };
    if let Err(e) = store.record_attempt(&due.job_id, &result, now).await {
        tracing::warn!(job_id = due.job_id, error = %e, "cannot record a webhook attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                private(ip.parse().unwrap_or_else(|_| unreachable!())),
                "{ip}"
            );
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(
                !private(ip.parse().unwrap_or_else(|_| unreachable!())),
                "{ip}"
            );
        }
    }

    #[test]
    fn signatures_cover_the_time_and_the_body() {
        let a = signature("s", 1, b"{}");
        assert!(a.starts_with("t=1,v1=") && a.len() == "t=1,v1=".len() + 64);
        assert_ne!(a, signature("s", 2, b"{}"));
        assert_ne!(a, signature("s", 1, b"{ }"));
        assert_ne!(a, signature("t", 1, b"{}"));
    }
}
