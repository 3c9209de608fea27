//! User plugins for unmark: WebAssembly filters and mask detectors, sandboxed in wasmtime.
//!
//! - [`abi`]: the contract (version 1), as the host checks it. Plugin authors read
//!   `plugins/ABI.md` and build against `plugins/include/unmark_plugin.h`.
//! - [`Sandbox`]: compiles a module once (cached in memory and on disk by SHA-256 and engine
//!   configuration) and runs each call in a fresh `Store` under a memory cap, an epoch
//!   deadline scaled by megapixels, and a stack limit. Nothing but the contract's three host
//!   functions is importable: no files, network, clock, environment or processes.
//! - [`Registry`]: installed plugins, `name@version`, kept in the blob store next to a JSON
//!   manifest, so that every worker sees the same modules without a database.
//! - [`PluginStage`]: a plugin step of the pipeline, on its own subject
//!   (`unmark.stage.plugin.<name>`), and [`supervise`], which starts one runner per
//!   installed plugin in a process that serves them all.

pub mod abi;
mod cache;
mod registry;
mod sandbox;
mod stage;

use std::time::Duration;

pub use abi::Kind;
pub use registry::{Manifest, Registry, RegistryError, resolve};
pub use sandbox::{Compiled, Input, Inspection, Limits, Sandbox, sha256_hex};
pub use stage::{PluginStage, spawn_runner, supervise};

/// Why a plugin was refused at upload, or why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The module is over the size limit.
    #[error("the module is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a WebAssembly module wasmtime accepts.
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// The module imports something the sandbox does not offer.
    #[error(
        "the module imports {0}, which the sandbox does not offer; a plugin may import only \
         unmark.output, unmark.param and unmark.log"
    )]
    ForbiddenImport(String),
    /// The module breaks the plugin contract (exports, types, calls).
    #[error("{0}")]
    Contract(String),
    /// The call ran past its deadline.
    #[error("exceeded its {0} CPU budget")]
    CpuBudget(String),
    /// The call tried to grow its memory past the cap.
    #[error("exceeded its {limit_mib} MiB memory limit")]
    Memory {
        /// The cap in MiB.
        limit_mib: u64,
    },
    /// The call overflowed its stack (deep recursion).
    #[error("overflowed its stack (recursion too deep)")]
    StackOverflow,
    /// The output handed to `unmark.output` has the wrong size.
    #[error("handed {got} bytes to unmark.output, expected {expected}")]
    OutputSize {
        /// Bytes handed over.
        got: u64,
        /// Bytes the contract requires.
        expected: u64,
    },
    /// A pointer and length from the guest run past its memory.
    #[error(
        "passed an out-of-bounds buffer to {call}: {len} bytes at {ptr} in a {memory}-byte memory"
    )]
    OutOfBounds {
        /// The host call or export.
        call: String,
        /// Guest address.
        ptr: u64,
        /// Length.
        len: u64,
        /// Size of the guest's memory.
        memory: u64,
    },
    /// The entry point returned 0 without handing over a result.
    #[error("returned without calling unmark.output")]
    NoOutput,
    /// The entry point returned a non-zero code.
    #[error("reported error code {code}{}", if log.is_empty() { String::new() } else { format!(": {log}") })]
    Guest {
        /// The code.
        code: i32,
        /// What the plugin logged.
        log: String,
    },
    /// A parameter the plugin asked for has the wrong type.
    #[error("parameter {name} {message}")]
    Param {
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Any other trap (unreachable, division by zero, out-of-bounds access in the guest).
    #[error("trapped: {0}")]
    Trap(String),
    /// The host failed; not the plugin's fault.
    #[error("plugin host: {0}")]
    Host(String),
}

impl PluginError {
    /// Whether the module itself was refused (at upload), as opposed to a failed call.
    pub fn is_upload_error(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Invalid(_) | Self::ForbiddenImport(_) | Self::Contract(_)
        )
    }
}

/// "2 s", "1.5 s", "250 ms".
pub(crate) fn describe_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What a process needs to install and run plugins: the registry, the sandbox, and a bell
/// that tells a [`supervise`] loop in the same process to look for new plugins at once.
#[derive(Clone)]
pub struct PluginHost {
    /// Installed plugins.
    pub registry: Registry,
    /// The wasmtime host.
    pub sandbox: std::sync::Arc<Sandbox>,
    /// Rung after an install.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

impl PluginHost {
    /// A host over `blobs` with `sandbox`.
    pub fn new(blobs: unmark_broker::BlobStore, sandbox: Sandbox) -> Self {
        Self {
            registry: Registry::new(blobs),
            sandbox: std::sync::Arc::new(sandbox),
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Validates and installs a module, then rings the bell.
    pub async fn add(
        &self,
        name: &str,
        version: Option<&str>,
        module: bytes::Bytes,
    ) -> Result<(Manifest, bool), RegistryError> {
        let added = self
            .registry
            .add(&self.sandbox, name, version, module)
            .await?;
        self.wake.notify_one();
        Ok(added)
    }
}
