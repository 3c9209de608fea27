//! `unmark plugins`: install, list and remove WASM plugins in the configured blob store
//! (every gateway and worker of a deployment sees them at once).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use unmark_broker::BlobStore;

use crate::config::Config;

/// What `unmark plugins` does.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Validates a module (exports, imports, size, ABI version) and installs it.
    Add {
        /// The plugin's name: 1 to 40 of [a-z0-9_-].
        name: String,
        /// The module (`.wasm`).
        file: PathBuf,
        /// Its version (default: the next whole number). Versions are immutable.
        #[arg(long)]
        version: Option<String>,
    },
    /// Lists installed plugins.
    List,
    /// Removes `name@version`, or every version of `name`.
    Remove {
        /// `name` or `name@version`.
        reference: String,
    },
}

/// Runs one `unmark plugins` command.
pub(crate) async fn run(config: &Config, command: PluginsCommand) -> Result<ExitCode> {
    let blobs = config.blob_config();
    let store = BlobStore::open(&blobs)
        .with_context(|| format!("cannot open the blob store {}", blobs.url))?;
    let host = config.plugin_host(store, true)?;
    match command {
        PluginsCommand::Add {
            name,
            file,
            version,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (m, created) = host.add(&name, version.as_deref(), bytes.into()).await?;
            println!(
                "{} {} ({} plugin, {} bytes, sha256 {})",
                if created {
                    "installed"
                } else {
                    "already installed:"
                },
                m.reference(),
                m.kind.as_str(),
                m.size,
                m.sha256
            );
        }
        PluginsCommand::List => {
            println!("{:<24} {:<8} {:>9}  sha256", "plugin", "kind", "bytes");
            for m in host.registry.list().await? {
                println!(
                    "{:<24} {:<8} {:>9}  {}",
                    m.reference(),
                    m.kind.as_str(),
                    m.size,
                    m.sha256
                );
            }
        }
        PluginsCommand::Remove { reference } => {
            for m in host.registry.remove(&reference).await? {
                println!("removed {}", m.reference());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
