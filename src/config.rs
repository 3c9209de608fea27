//! Configuration: one TOML file plus `UNMARK_*` environment overrides.
//!
//! Any key can be overridden as `UNMARK_<SECTION>__<KEY>` (double underscore between section
//! and key), for example `UNMARK_LIMITS__MAX_MEGAPIXELS=80`. The value is read as TOML when
//! it parses (numbers, booleans) and as a string otherwise. Shortcuts: `UNMARK_API_KEY`,
//! `UNMARK_BIND`, `UNMARK_DATA_DIR`. Precedence: command-line flags, then environment, then
//! the file, then the defaults. `unmark.example.toml` documents every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use unmark_jobs::accounts::Plan;
use unmark_schemas::params::{
    DecodeParams, DetectParams, EncodeParams, Engine, InpaintParams, OutputFormat, PrescaleParams,
    WatermarkOptions,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) server: Server,
    pub(crate) database: Database,
    /// `[blobs]`: where inputs, intermediates and results live.
    pub(crate) blobs: unmark_broker::BlobConfig,
    pub(crate) jobs: Jobs,
    pub(crate) nats: Nats,
    /// Plans by name, added to (or replacing) the shipped free, basic, pro and enterprise.
    pub(crate) plans: BTreeMap<String, Plan>,
    pub(crate) rate_limit: RateLimit,
    pub(crate) webhooks: Webhooks,
    pub(crate) limits: DecodeParams,
    pub(crate) defaults: Defaults,
    pub(crate) runner: Runner,
    pub(crate) plugins: Plugins,
    /// `[models]`: the neural networks.
    pub(crate) models: crate::models::ModelsConfig,
}

/// `[plugins]`: the WASM sandbox's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Plugins {
    /// Most linear memory one plugin call may use, in MiB.
    pub(crate) memory_mib: u64,
    /// CPU budget of a call in milliseconds, before the per-megapixel part.
    pub(crate) cpu_base_ms: u64,
    /// CPU budget added per megapixel of input, in milliseconds.
    pub(crate) cpu_ms_per_megapixel: u64,
    /// Native stack a plugin's calls may use, in KiB.
    pub(crate) stack_kib: usize,
    /// Largest module accepted at upload, in KiB.
    pub(crate) max_module_kib: usize,
    /// Where compiled modules are cached; empty = `<data_dir>/plugin-cache`.
    pub(crate) cache_dir: String,
}

impl Default for Plugins {
    fn default() -> Self {
        let d = unmark_plugins::Limits::default();
        Self {
            memory_mib: d.memory_bytes >> 20,
            cpu_base_ms: d.cpu_base.as_millis() as u64,
            cpu_ms_per_megapixel: d.cpu_per_megapixel.as_millis() as u64,
            stack_kib: d.stack_bytes >> 10,
            max_module_kib: d.max_module_bytes >> 10,
            cache_dir: String::new(),
        }
    }
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Server {
    /// Address to listen on.
    pub(crate) bind: String,
    /// Where unmark keeps state.
    pub(crate) data_dir: PathBuf,
    /// A key accepted besides those in the database (`unmark keys`), with admin rights.
    pub(crate) api_key: String,
    /// The plan of `api_key`.
    pub(crate) api_key_plan: String,
    /// When set, `GET /metrics` needs it as `Authorization: Bearer`.
    pub(crate) metrics_token: String,
    /// Largest request body; by default twice `limits.max_input_bytes` plus 1 MiB.
    pub(crate) max_body_bytes: Option<usize>,
    /// Seconds a synchronous request waits for its job.
    pub(crate) sync_timeout_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("unmark-data"),
            api_key: String::new(),
            api_key_plan: "enterprise".into(),
            metrics_token: String::new(),
            max_body_bytes: None,
            sync_timeout_secs: 120,
        }
    }
}

/// `[database]`: job records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Database {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`; empty = SQLite in
    /// `<data_dir>/unmark.db`.
    pub(crate) url: String,
    /// Connections in the pool.
    pub(crate) max_connections: u32,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
        }
    }
}

/// `[jobs]`: how long job results are kept, and the sweeper.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Jobs {
    /// Seconds a result (and a failed job's blobs) is kept after the job ends.
    pub(crate) result_ttl_secs: u64,
    /// Seconds between two sweeps.
    pub(crate) sweep_interval_secs: u64,
    /// Seconds blobs nobody accounts for are left alone before the sweeper deletes them.
    pub(crate) orphan_grace_secs: u64,
    /// Seconds a job may go without progress before it is failed with `timeout`.
    pub(crate) stale_after_secs: u64,
    /// Days a finished job's record is kept (usage statistics stay).
    pub(crate) record_ttl_days: u64,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            result_ttl_secs: 24 * 3600,
            sweep_interval_secs: 300,
            orphan_grace_secs: 3600,
            stale_after_secs: 24 * 3600,
            record_ttl_days: 30,
        }
    }
}

/// `[rate_limit]`: limits before and beside the plans' own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RateLimit {
    /// Requests per minute per client IP, before authentication; 0 turns the layer off.
    pub(crate) per_ip_per_minute: u32,
    /// Requests one IP may send at once above that rate.
    pub(crate) per_ip_burst: u32,
    /// Proxies (addresses or CIDR blocks) whose X-Forwarded-For is believed.
    pub(crate) trusted_proxies: Vec<String>,
    /// Stage backlog at which priority-0 plans get 503; priority p at (p + 1) times this.
    pub(crate) admission_queue_depth: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        let d = unmark_gateway::RateLimitConfig::default();
        let per_ip = d.per_ip.unwrap_or(unmark_jobs::limits::Rate {
            per_minute: 0,
            burst: 0,
        });
        Self {
            per_ip_per_minute: per_ip.per_minute,
            per_ip_burst: per_ip.burst,
            trusted_proxies: d.trusted_proxies,
            admission_queue_depth: d.admission_queue_depth,
        }
    }
}

/// `[webhooks]`: delivery of job outcomes to `callback_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Webhooks {
    /// Deliver webhooks; when off, `callback_url` is only kept with the job.
    pub(crate) enabled: bool,
    /// Allow callbacks to loopback, private and link-local addresses.
    pub(crate) allow_private: bool,
    /// Attempts before a delivery is given up on.
    pub(crate) max_attempts: u32,
    /// Milliseconds before the second attempt; doubled after each failure.
    pub(crate) initial_backoff_ms: u64,
    /// Longest wait between attempts, in seconds.
    pub(crate) max_backoff_secs: u64,
    /// Seconds one attempt may take.
    pub(crate) timeout_secs: u64,
    /// Signs webhooks of jobs submitted without a database key.
    pub(crate) secret: String,
}

impl Default for Webhooks {
    fn default() -> Self {
        let d = unmark_gateway::WebhookConfig::default();
        Self {
            enabled: d.enabled,
            allow_private: d.allow_private,
            max_attempts: d.max_attempts,
            initial_backoff_ms: d.initial_backoff.as_millis() as u64,
            max_backoff_secs: d.max_backoff.as_secs(),
            timeout_secs: d.timeout.as_secs(),
            secret: d.secret,
        }
    }
}

/// `[defaults]`: the default options of every watermark removal (see `unmark.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Defaults {
    pub(crate) engine: Engine,
    pub(crate) radius: u32,
    pub(crate) mask_dilate: u32,
    pub(crate) threshold: f32,
    pub(crate) work_max_side: u32,
    pub(crate) format: Option<OutputFormat>,
    pub(crate) quality: u8,
    pub(crate) keep_metadata: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        let o = WatermarkOptions::default();
        Self {
            engine: o.inpaint.engine,
            radius: o.inpaint.radius,
            mask_dilate: o.detect.mask_dilate,
            threshold: o.detect.threshold,
            work_max_side: o.prescale.work_max_side,
            format: o.encode.format,
            quality: o.encode.quality,
            keep_metadata: o.encode.keep_metadata,
        }
    }
}

/// `[nats]`: scale-out over NATS JetStream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Nats {
    /// Server URL; unset = embedded mode (in-process broker).
    pub(crate) url: Option<String>,
    /// Seconds a delivered message may go unacknowledged before another worker gets it.
    pub(crate) ack_wait_secs: u64,
    /// Seconds job events are kept in the events stream.
    pub(crate) events_max_age_secs: u64,
}

impl Default for Nats {
    fn default() -> Self {
        Self {
            url: None,
            ack_wait_secs: 30,
            events_max_age_secs: 24 * 3600,
        }
    }
}

/// `[runner]`: how stages consume their subjects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Runner {
    /// Messages each stage processes at once; 0 means one per CPU core.
    pub(crate) concurrency: usize,
    /// Deliveries of a message before a retryable failure fails the job.
    pub(crate) max_deliver: u32,
}

impl Default for Runner {
    fn default() -> Self {
        Self {
            concurrency: 0,
            max_deliver: 5,
        }
    }
}

const SHORTCUTS: [(&str, &str, &str); 6] = [
    ("UNMARK_API_KEY", "server", "api_key"),
    ("UNMARK_NATS_URL", "nats", "url"),
    ("UNMARK_DATABASE_URL", "database", "url"),
    ("UNMARK_BLOBS_URL", "blobs", "url"),
    ("UNMARK_BIND", "server", "bind"),
    ("UNMARK_DATA_DIR", "server", "data_dir"),
];

fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) -> Result<()> {
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(Default::default()));
    let toml::Value::Table(section_table) = entry else {
        anyhow::bail!("configuration key {section} must be a table");
    };
    section_table.insert(key.to_owned(), value);
    Ok(())
}

impl Config {
    /// Reads `file` (when given), then applies `vars` (the environment).
    pub(crate) fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, text) in vars {
            if let Some((_, section, key)) = SHORTCUTS.iter().find(|(n, ..)| *n == name) {
                set(&mut table, section, key, toml::Value::String(text))?;
            } else if let Some((section, key)) = name
                .strip_prefix("UNMARK_")
                .and_then(|rest| rest.split_once("__"))
            {
                let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
                set(&mut table, &section, &key, env_value(&text))?;
            }
        }
        let config: Config = table
            .try_into()
            .context("invalid configuration (file or UNMARK_* environment)")?;
        config
            .options()
            .validate()
            .context("invalid configuration")?;
        config.check_plugins()?;
        config.models.validate()?;
        let plans = config.all_plans();
        if !plans.contains_key(&config.server.api_key_plan) {
            anyhow::bail!(
                "server.api_key_plan is {:?}, which is not a plan; plans are {}",
                config.server.api_key_plan,
                plans.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(config)
    }

    /// Default options of a background removal: the same input limits as a watermark
    /// removal.
    pub(crate) fn background_options(&self) -> unmark_schemas::background::BackgroundOptions {
        unmark_schemas::background::BackgroundOptions {
            decode: self.limits.clone(),
            ..Default::default()
        }
    }

    /// Default options of a watermark removal.
    pub(crate) fn options(&self) -> WatermarkOptions {
        let d = &self.defaults;
        WatermarkOptions {
            decode: self.limits.clone(),
            prescale: PrescaleParams {
                work_max_side: d.work_max_side,
            },
            detect: DetectParams {
                mask_dilate: d.mask_dilate,
                threshold: d.threshold,
            },
            inpaint: InpaintParams {
                engine: d.engine,
                radius: d.radius,
            },
            plugins: Default::default(),
            encode: EncodeParams {
                format: d.format,
                quality: d.quality,
                keep_metadata: d.keep_metadata,
                returns: Default::default(),
            },
        }
    }

    /// Settings of the HTTP API.
    pub(crate) fn gateway(&self) -> unmark_gateway::GatewayConfig {
        let options = self.options();
        let max_body_bytes = self
            .server
            .max_body_bytes
            .unwrap_or(2 * options.decode.max_input_bytes as usize + 1024 * 1024);
        unmark_gateway::GatewayConfig {
            api_key: Some(self.server.api_key.clone()).filter(|k| !k.is_empty()),
            max_body_bytes,
            defaults: options,
            background: self.background_options(),
            sync_timeout: Duration::from_secs(self.server.sync_timeout_secs),
            plans: self.all_plans(),
            static_key_plan: self.server.api_key_plan.clone(),
            rate_limit: unmark_gateway::RateLimitConfig {
                per_ip: (self.rate_limit.per_ip_per_minute > 0).then_some(
                    unmark_jobs::limits::Rate {
                        per_minute: self.rate_limit.per_ip_per_minute,
                        burst: self.rate_limit.per_ip_burst,
                    },
                ),
                trusted_proxies: self.rate_limit.trusted_proxies.clone(),
                admission_queue_depth: self.rate_limit.admission_queue_depth,
            },
            metrics_token: Some(self.server.metrics_token.clone()).filter(|t| !t.is_empty()),
            webhooks: self.webhook_config(),
        }
    }

    /// The shipped plans with the configured ones over them.
    pub(crate) fn all_plans(&self) -> BTreeMap<String, Plan> {
        let mut plans = unmark_jobs::accounts::default_plans();
        plans.extend(self.plans.clone());
        plans
    }

    /// Webhook delivery settings.
    pub(crate) fn webhook_config(&self) -> unmark_gateway::WebhookConfig {
        let w = &self.webhooks;
        unmark_gateway::WebhookConfig {
            enabled: w.enabled,
            allow_private: w.allow_private,
            max_attempts: w.max_attempts.max(1),
            initial_backoff: Duration::from_millis(w.initial_backoff_ms),
            max_backoff: Duration::from_secs(w.max_backoff_secs),
            timeout: Duration::from_secs(w.timeout_secs.max(1)),
            secret: w.secret.clone(),
        }
    }

    /// The job database's URL.
    pub(crate) fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            let file = self.server.data_dir.join("unmark.db");
            let file = std::path::absolute(&file).unwrap_or(file);
            format!("sqlite://{}", file.display())
        } else {
            self.database.url.clone()
        }
    }

    /// Where blobs live: `[blobs]`, with an empty URL meaning `<data_dir>/blobs`.
    pub(crate) fn blob_config(&self) -> unmark_broker::BlobConfig {
        let mut blobs = self.blobs.clone();
        if blobs.url.is_empty() {
            blobs.url = self.server.data_dir.join("blobs").display().to_string();
        }
        blobs
    }

    /// What the sweeper keeps, and for how long.
    pub(crate) fn sweep(&self) -> unmark_jobs::SweepConfig {
        let j = &self.jobs;
        unmark_jobs::SweepConfig {
            result_ttl: Duration::from_secs(j.result_ttl_secs),
            orphan_grace: Duration::from_secs(j.orphan_grace_secs),
            stale_after: Duration::from_secs(j.stale_after_secs),
            record_ttl: Duration::from_secs(j.record_ttl_days * 24 * 3600),
        }
    }

    /// Settings of the stage runners.
    fn check_plugins(&self) -> Result<()> {
        let p = &self.plugins;
        let ranges = [
            ("memory_mib", p.memory_mib, 1, 4096),
            ("cpu_base_ms", p.cpu_base_ms, 1, 3_600_000),
            ("cpu_ms_per_megapixel", p.cpu_ms_per_megapixel, 0, 3_600_000),
            // Plugin calls run on the runtime's blocking threads, whose native stack is 2 MiB.
            ("stack_kib", p.stack_kib as u64, 32, 1024),
            ("max_module_kib", p.max_module_kib as u64, 1, 256 * 1024),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                anyhow::bail!("plugins.{name} must be from {min} to {max}, got {value}");
            }
        }
        Ok(())
    }

    /// The plugin sandbox's limits.
    pub(crate) fn plugin_limits(&self) -> unmark_plugins::Limits {
        let p = &self.plugins;
        unmark_plugins::Limits {
            memory_bytes: p.memory_mib << 20,
            cpu_base: Duration::from_millis(p.cpu_base_ms),
            cpu_per_megapixel: Duration::from_millis(p.cpu_ms_per_megapixel),
            stack_bytes: p.stack_kib << 10,
            max_module_bytes: p.max_module_kib << 10,
        }
    }

    /// The plugin registry in `blobs` and a sandbox with the configured limits, caching
    /// compiled modules on disk when `cache` is set.
    pub(crate) fn plugin_host(
        &self,
        blobs: unmark_broker::BlobStore,
        cache: bool,
    ) -> Result<unmark_plugins::PluginHost> {
        let dir = if self.plugins.cache_dir.is_empty() {
            self.server.data_dir.join("plugin-cache")
        } else {
            PathBuf::from(&self.plugins.cache_dir)
        };
        let sandbox = unmark_plugins::Sandbox::new(self.plugin_limits(), cache.then_some(dir))
            .context("cannot start the plugin sandbox")?;
        Ok(unmark_plugins::PluginHost::new(blobs, sandbox))
    }

    pub(crate) fn runner(&self) -> unmark_stages::RunnerConfig {
        let mut runner = unmark_stages::RunnerConfig {
            max_deliver: self.runner.max_deliver,
            ..Default::default()
        };
        if self.runner.concurrency > 0 {
            runner.concurrency = self.runner.concurrency;
        }
        // Three progress acks per ack wait: one may be lost and the message still stays put.
        runner.progress_every = Duration::from_secs(self.nats.ack_wait_secs.max(1)) / 3;
        runner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("unmark.toml");
        std::fs::write(
            &file,
            "[defaults]\nradius = 7\n[server]\nbind = \"0.0.0.0:1\"\n",
        )
        .expect("write");
        let config = Config::load(
            Some(&file),
            vars(&[
                ("UNMARK_DEFAULTS__MASK_DILATE", "4"),
                ("UNMARK_API_KEY", "k"),
                ("UNMARK_BIND", "127.0.0.1:9"),
                ("HOME", "/root"),
            ]),
        )
        .expect("load");
        assert_eq!(config.defaults.radius, 7);
        assert_eq!(config.defaults.mask_dilate, 4);
        assert_eq!(config.server.bind, "127.0.0.1:9");
        assert_eq!(config.gateway().api_key.as_deref(), Some("k"));
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("unmark.example.toml");
        let config = Config::load(Some(&example), vars(&[])).expect("example parses");
        assert_eq!(config.options(), WatermarkOptions::default());
        assert_eq!(config.server.bind, Server::default().bind);
        assert_eq!(config.blob_config(), Config::default().blob_config());
        assert_eq!(config.database_url(), Config::default().database_url());
        assert_eq!(config.sweep(), Config::default().sweep());
        assert_eq!(config.all_plans(), unmark_jobs::accounts::default_plans());
        assert_eq!(config.webhook_config(), Config::default().webhook_config());
        assert_eq!(
            config.gateway().rate_limit,
            Config::default().gateway().rate_limit
        );
        assert_eq!(
            config.database.max_connections,
            Database::default().max_connections
        );
        let (file, default) = (&config.models, crate::models::ModelsConfig::default());
        assert_eq!(
            (&file.isnet, &file.device, file.input_side, file.max_batch),
            (
                &default.isnet,
                &default.device,
                default.input_side,
                default.max_batch
            )
        );
        assert_eq!(
            (file.max_queue_delay_ms, file.queue_capacity),
            (default.max_queue_delay_ms, default.queue_capacity)
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let err = Config::load(None, vars(&[("UNMARK_DEFAULTS__RADIOS", "4")])).expect_err("typo");
        assert!(format!("{err:#}").contains("radios"), "{err:#}");
        let err =
            Config::load(None, vars(&[("UNMARK_DEFAULTS__RADIUS", "99")])).expect_err("range");
        assert!(
            format!("{err:#}").contains("radius must be from 1 to 32"),
            "{err:#}"
        );
    }
}
