//! Installed plugins, kept in the blob store so that every worker sees the same modules
//! without a database: `plugins/<name>/<version>.wasm` and its manifest
//! `plugins/<name>/<version>.json`, written last (a module without a manifest is not
//! installed). Versions are immutable: adding the same bytes again is a no-op, other bytes
//! under an installed version are refused.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use unmark_broker::{BlobError, BlobStore, now_ms};
use unmark_schemas::BlobRef;
use unmark_schemas::params::{
    PluginRole, WatermarkOptions, check_plugin_name, check_plugin_version, parse_plugin_ref,
};

use crate::{Kind, PluginError, Sandbox, abi};

const PREFIX: &str = "plugins/";

/// What the registry keeps about an installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Filter or mask detector, read from the module's exports.
    pub kind: Kind,
    /// SHA-256 of the module, hex.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: u64,
    /// Contract version.
    pub abi: i32,
    /// When it was added, in milliseconds since the epoch.
    pub created_ms: u64,
}

impl Manifest {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn module_key(&self) -> String {
        module_key(&self.name, &self.version)
    }
}

fn module_key(name: &str, version: &str) -> String {
    format!("{PREFIX}{name}/{version}.wasm")
}

fn manifest_key(name: &str, version: &str) -> String {
    format!("{PREFIX}{name}/{version}.json")
}

/// Why the registry refused a request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A malformed name, version or reference (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The module was refused at validation (HTTP 422).
    #[error("plugin refused: {0}")]
    Rejected(PluginError),
    /// No such plugin (HTTP 404).
    #[error("plugin {0} is not installed")]
    NotFound(String),
    /// The version exists with other bytes (HTTP 409).
    #[error(
        "{reference} is already installed with another module (sha256 {existing}); versions \
         are immutable, so add this one under a new version"
    )]
    Conflict {
        /// `name@version`.
        reference: String,
        /// Digest of the installed module.
        existing: String,
    },
    /// The blob store failed (HTTP 500).
    #[error("plugin registry: {0}")]
    Store(String),
}

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<PluginError> for RegistryError {
    fn from(e: PluginError) -> Self {
        Self::Rejected(e)
    }
}

impl From<unmark_schemas::ParamError> for RegistryError {
    fn from(e: unmark_schemas::ParamError) -> Self {
        Self::BadRequest(e.message)
    }
}

/// Orders versions: dot-separated parts compared as numbers where both are numbers.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// The plugin registry over a blob store.
#[derive(Clone, Debug)]
pub struct Registry {
    blobs: BlobStore,
}

impl Registry {
    /// The registry in `blobs`.
    pub fn new(blobs: BlobStore) -> Self {
        Self { blobs }
    }

    /// Validates `module` in the sandbox and installs it as `name@version`; without a
    /// version, as the next whole number. Returns the manifest and whether it is new.
    pub async fn add(
        &self,
        sandbox: &Arc<Sandbox>,
        name: &str,
        version: Option<&str>,
        module: Bytes,
    ) -> Result<(Manifest, bool), RegistryError> {
        check_plugin_name(name)?;
        if let Some(v) = version {
            check_plugin_version(v)?;
        }
        let checker = Arc::clone(sandbox);
        let bytes = module.clone();
        let inspection = tokio::task::spawn_blocking(move || checker.inspect(&bytes))
            .await
            .map_err(|e| RegistryError::Store(format!("validation task failed: {e}")))??;
        let installed = self.versions(name).await?;
        let version = match version {
            Some(v) => v.to_owned(),
            None => match installed.iter().find(|m| m.sha256 == inspection.sha256) {
                Some(same) => return Ok((same.clone(), false)),
                None => next_version(&installed)?,
            },
        };
        if let Some(existing) = installed.iter().find(|m| m.version == version) {
            if existing.sha256 == inspection.sha256 {
                return Ok((existing.clone(), false));
            }
            return Err(RegistryError::Conflict {
                reference: existing.reference(),
                existing: existing.sha256.clone(),
            });
        }
        let manifest = Manifest {
            name: name.to_owned(),
            version,
            kind: inspection.kind,
            sha256: inspection.sha256,
            size: inspection.size as u64,
            abi: abi::ABI_VERSION,
            created_ms: now_ms(),
        };
        self.blobs.put(&manifest.module_key(), module).await?;
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| RegistryError::Store(e.to_string()))?;
        self.blobs
            .put(&manifest_key(name, &manifest.version), json.into())
            .await?;
        Ok((manifest, true))
    }

    /// Every installed plugin, by name, then version (oldest first).
    pub async fn list(&self) -> Result<Vec<Manifest>, RegistryError> {
        self.manifests(PREFIX).await
    }

    /// The installed versions of `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<Manifest>, RegistryError> {
        check_plugin_name(name)?;
        self.manifests(&format!("{PREFIX}{name}/")).await
    }

    async fn manifests(&self, prefix: &str) -> Result<Vec<Manifest>, RegistryError> {
        let mut out = Vec::new();
        for key in self.blobs.list(prefix).await? {
            if !key.ends_with(".json") {
                continue;
            }
            let blob = BlobRef {
                key: key.clone(),
                size: 0,
            };
            let bytes = match self.blobs.get(&blob).await {
                Ok(b) => b,
                // Removed while we listed.
                Err(BlobError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!("skipping unreadable plugin manifest {key}: {e}"),
            }
        }
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| compare_versions(&a.version, &b.version))
        });
        Ok(out)
    }

    /// The names that have at least one version installed.
    /// Read from the manifests' keys alone (`plugins/<name>/<version>.json`), so that a
    /// supervisor polling it reads no manifest.
    pub async fn names(&self) -> Result<Vec<String>, RegistryError> {
        let mut names: Vec<String> = self
            .blobs
            .list(PREFIX)
            .await?
            .iter()
            .filter(|key| key.ends_with(".json"))
            .filter_map(|key| key.strip_prefix(PREFIX)?.split_once('/'))
            .map(|(name, _)| name.to_owned())
            .collect();
        names.dedup();
        Ok(names)
    }

    /// `name@version`, or `name` for its newest version.
    pub async fn get(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let (name, version) = parse_plugin_ref(reference)?;
        let versions = self.versions(name).await?;
        let found = match version {
            Some(v) => versions.into_iter().find(|m| m.version == v),
            None => versions.into_iter().last(),
        };
        found.ok_or_else(|| RegistryError::NotFound(reference.to_owned()))
    }

    /// The module's bytes, checked against the manifest's digest.
    pub async fn module(&self, name: &str, version: &str) -> Result<Bytes, RegistryError> {
        let blob = BlobRef {
            key: module_key(name, version),
            size: 0,
        };
        match self.blobs.get(&blob).await {
            Ok(bytes) => Ok(bytes),
            Err(BlobError::NotFound(_)) => {
                Err(RegistryError::NotFound(format!("{name}@{version}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name@version`, or every version of `name`; returns what was removed.
    pub async fn remove(&self, reference: &str) -> Result<Vec<Manifest>, RegistryError> {
        let (name, version) = parse_plugin_ref(reference)?;
        let gone: Vec<Manifest> = self
            .versions(name)
            .await?
            .into_iter()
            .filter(|m| version.is_none_or(|v| v == m.version))
            .collect();
        if gone.is_empty() {
            return Err(RegistryError::NotFound(reference.to_owned()));
        }
        for m in &gone {
            // The manifest first: from then on the version is not installed.
            self.blobs
                .delete(&manifest_key(&m.name, &m.version))
                .await?;
            self.blobs.delete(&m.module_key()).await?;
        }
        Ok(gone)
    }
}

fn next_version(installed: &[Manifest]) -> Result<String, RegistryError> {
    let mut top = 0u64;
    for m in installed {
        top = top.max(m.version.parse::<u64>().map_err(|_| {
            RegistryError::BadRequest(format!(
                "{} has version {:?}, which is not a whole number: give the new version explicitly",
                m.name, m.version
            ))
        })?);
    }
    Ok((top + 1).to_string())
}

/// Resolves every plugin step of `options` against the registry: `name` becomes
/// `name@<newest>`, the module's digest is pinned (or checked, where the client pinned it),
/// and each plugin's kind must suit its place (filters before and after, a mask detector).
pub async fn resolve(
    registry: &Registry,
    options: &mut WatermarkOptions,
) -> Result<(), RegistryError> {
    for (role, call) in options.plugins.calls_mut() {
        let manifest = registry.get(&call.plugin).await?;
        let wanted = match role {
            PluginRole::Pre | PluginRole::Post => Kind::Filter,
            PluginRole::Detector => Kind::Mask,
        };
        if manifest.kind != wanted {
            return Err(RegistryError::BadRequest(format!(
                "plugin {} is a {} plugin, but a {} step needs a {} plugin",
                manifest.reference(),
                manifest.kind.as_str(),
                role.as_str(),
                wanted.as_str()
            )));
        }
        if let Some(pinned) = &call.sha256
            && *pinned != manifest.sha256
        {
            return Err(RegistryError::BadRequest(format!(
                "plugin {} has sha256 {}, not the pinned {pinned}",
                manifest.reference(),
                manifest.sha256
            )));
        }
        call.plugin = manifest.reference();
        call.sha256 = Some(manifest.sha256);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert_eq!(compare_versions("10", "9"), Ordering::Greater);
        assert_eq!(compare_versions("1.2.0", "1.10"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
    }
}
