use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use unmark_schemas::BlobRef;

/// A failure of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob under that key.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The store failed.
    #[error("blob store: {0}")]
    Store(String),
    /// The configuration names no usable store.
    #[error("blob store configuration: {0}")]
    Config(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Self::NotFound(path),
            other => Self::Store(other.to_string()),
        }
    }
}

/// Blob keys. Deterministic, so that a redelivered step overwrites rather than duplicates.
pub mod keys {
    /// Everything of one job lives under `jobs/<id>/`.
    pub fn job_prefix(job_id: &str) -> String {
        format!("jobs/{job_id}/")
    }

    /// A job input uploaded by the client: `jobs/<id>/in-<name>`.
    pub fn input(job_id: &str, name: &str) -> String {
        format!("jobs/{job_id}/in-{name}")
    }

    /// An artifact made by a step: `jobs/<id>/<step>-<stage>-<name>`.
    pub fn artifact(job_id: &str, step: u32, stage: &str, name: &str) -> String {
        format!("jobs/{job_id}/{step}-{stage}-{name}")
    }

    /// A watermark profile: `profiles/<id>.json` (the id is a checked `JobId`).
    pub fn profile(id: &unmark_schemas::JobId) -> String {
        format!("profiles/{id}.json")
    }
}

/// Where blobs live (the `[blobs]` section of the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobConfig {
    /// A local folder (a path, or `file:///path`), or `s3://bucket[/prefix]`; empty in the
    /// config file means `<data_dir>/blobs`.
    pub url: String,
    /// Flush every local blob and its folder to disk before a put returns.
    pub fsync: bool,
    /// S3: endpoint of an S3-compatible server (MinIO, Ceph, moto); empty = AWS.
    pub s3_endpoint: String,
    /// S3: region.
    pub s3_region: String,
    /// S3: allow plain `http://` endpoints.
    pub s3_allow_http: bool,
    /// S3: access key id; empty = `AWS_ACCESS_KEY_ID` (or the instance's role).
    pub s3_access_key_id: String,
    /// S3: secret access key; empty = `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_access_key: String,
}

/// What a blob URL names.
enum Location<'a> {
    Local(PathBuf),
    S3 { bucket: &'a str, prefix: &'a str },
}

impl BlobConfig {
    /// Checks the URL without touching the store.
    pub fn validate(&self) -> Result<(), BlobError> {
        self.location().map(|_| ())
    }

    /// The folder of a local store; `None` for S3 or an invalid URL.
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self.location() {
            Ok(Location::Local(dir)) => Some(dir),
            _ => None,
        }
    }

    fn location(&self) -> Result<Location<'_>, BlobError> {
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::Config(format!(
                    "{:?} names no bucket; expected s3://bucket[/prefix]",
                    self.url
                )));
            }
            return Ok(Location::S3 { bucket, prefix });
        }
        if self.url.contains("://") && !self.url.starts_with("file://") {
            return Err(BlobError::Config(format!(
                "unsupported blob store {:?}; expected a folder, file:///path or s3://bucket",
                self.url
            )));
        }
        if self.url.is_empty() {
            return Err(BlobError::Config("the blob store URL is empty".into()));
        }
        Ok(Location::Local(PathBuf::from(
            self.url.trim_start_matches("file://"),
        )))
    }

    /// A local folder with fsync on.
    pub fn local(dir: &Path) -> Self {
        Self {
            url: dir.display().to_string(),
            ..Self::default()
        }
    }
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            fsync: true,
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_allow_http: false,
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
        }
    }
}

/// The blobs of one job (everything under `jobs/<id>/`), as the sweeper sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct JobBlobs {
    /// Every key.
    pub keys: Vec<String>,
    /// When the newest of them was written.
    pub newest: SystemTime,
}

/// Blobs on top of `object_store`: in memory for one-shot CLI runs, a local directory (fsync
/// on) by default, S3 for scale-out across hosts.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store whose writes are flushed to disk.
    fsync_root: Option<PathBuf>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.store)
    }
}

impl BlobStore {
    /// Wraps any object store.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            fsync_root: None,
        }
    }

    /// A store in this process's memory: nothing touches the disk.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(InMemory::new()))
    }

    /// A store in a local directory, created if missing.
    pub fn local(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(fs)))
    }

    /// The store `config` names: a local folder (created if missing) or an S3 bucket.
    ///
    /// S3 credentials come from the config when set, else from the usual `AWS_*` variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
    pub fn open(config: &BlobConfig) -> Result<Self, BlobError> {
        let (bucket, prefix) = match config.location()? {
            Location::S3 { bucket, prefix } => (bucket, prefix),
            Location::Local(dir) => {
                let mut store = Self::local(&dir)?;
                if config.fsync {
                    store.fsync_root = Some(dir);
                }
                return Ok(store);
            }
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&config.s3_region)
            .with_allow_http(config.s3_allow_http);
        if !config.s3_access_key_id.is_empty() {
            builder = builder
                .with_access_key_id(&config.s3_access_key_id)
                .with_secret_access_key(&config.s3_secret_access_key);
        }
        if !config.s3_endpoint.is_empty() {
            // S3-compatible servers are addressed by path: http://host/bucket/key.
            builder = builder
                .with_endpoint(&config.s3_endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        let prefix = prefix.trim_matches('/');
        let store = if prefix.is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Self::new(store))
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        let size = bytes.len() as u64;
        self.store
            .put(&StorePath::from(key), PutPayload::from(bytes))
            .await?;
        if let Some(root) = &self.fsync_root {
            let file = root.join(key);
            tokio::task::spawn_blocking(move || sync_file_and_folder(&file))
                .await
                .map_err(|e| BlobError::Store(format!("fsync task failed: {e}")))?
                .map_err(|e| BlobError::Store(format!("cannot flush {key} to disk: {e}")))?;
        }
        Ok(BlobRef {
            key: key.to_owned(),
            size,
        })
    }

    /// Reads a whole blob.
    pub async fn get(&self, blob: &BlobRef) -> Result<Bytes, BlobError> {
        let got = self.store.get(&StorePath::from(blob.key.as_str())).await?;
        Ok(got.bytes().await?)
    }

    /// Whether a blob is there, without reading it.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&StorePath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes one blob; a missing blob is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&StorePath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every blob whose key starts with `prefix` (a folder such as `jobs/<id>/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, BlobError> {
        let folder = StorePath::from(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
        for meta in &metas {
            self.delete(meta.location.as_ref()).await?;
        }
        Ok(metas.len())
    }

    /// Every job that has blobs, with its keys and the time of its newest write.
    pub async fn jobs(&self) -> Result<BTreeMap<String, JobBlobs>, BlobError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&StorePath::from("jobs")))
            .try_collect()
            .await?;
        let mut jobs: BTreeMap<String, JobBlobs> = BTreeMap::new();
        for meta in metas {
            let key = meta.location.to_string();
            let Some(id) = key.strip_prefix("jobs/").and_then(|r| r.split('/').next()) else {
                continue;
            };
            let written = SystemTime::from(meta.last_modified);
            let entry = jobs.entry(id.to_owned()).or_insert_with(|| JobBlobs {
                keys: Vec::new(),
                newest: written,
            });
            entry.newest = entry.newest.max(written);
            entry.keys.push(key);
        }
        Ok(jobs)
    }

    /// Every key under `prefix` (a folder such as `plugins/`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let folder = StorePath::from(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Number of blobs under `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<usize, BlobError> {
        let folder = StorePath::from(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
        Ok(metas.len())
    }
}

/// Makes a new file and its directory entry durable: the file's data, then the folder that
/// names it (a rename is only durable once its folder is flushed).
fn sync_file_and_folder(file: &Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(folder) = file.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_prefix() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(async {
                let store = BlobStore::in_memory();
                let a = store
                    .put(&keys::input("j", "input"), "abc".into())
                    .await
                    .expect("put");
                store
                    .put(&keys::artifact("j", 1, "decode", "image"), "d".into())
                    .await
                    .expect("put");
                store
                    .put(&keys::input("k", "input"), "x".into())
                    .await
                    .expect("put");
                assert_eq!(&store.get(&a).await.expect("get")[..], b"abc");
                assert_eq!(
                    store
                        .delete_prefix(&keys::job_prefix("j"))
                        .await
                        .expect("del"),
                    2
                );
                assert!(matches!(store.get(&a).await, Err(BlobError::NotFound(_))));
                assert_eq!(store.count("jobs/k/").await.expect("count"), 1);
            });
    }

    #[test]
    fn local_store_with_fsync_lists_jobs() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = BlobStore::open(&BlobConfig::local(dir.path())).expect("open");
                store.put("jobs/a/in-input", "1".into()).await.expect("put");
                store
                    .put("jobs/a/4-encode-result", "22".into())
                    .await
                    .expect("put");
                store.put("jobs/b/in-input", "3".into()).await.expect("put");
                assert!(dir.path().join("jobs/a/4-encode-result").is_file());
                let jobs = store.jobs().await.expect("list");
                assert_eq!(jobs.len(), 2);
                assert_eq!(jobs["a"].keys.len(), 2);
                assert_eq!(jobs["b"].keys, vec!["jobs/b/in-input".to_owned()]);
            });
    }

    #[test]
    fn bad_urls_are_named() {
        let mut config = BlobConfig::local(Path::new("x"));
        config.url = "s3://".into();
        let err = BlobStore::open(&config).expect_err("no bucket");
        assert!(err.to_string().contains("names no bucket"), "{err}");
        config.url = "gs://bucket".into();
        let err = BlobStore::open(&config).expect_err("scheme");
        assert!(err.to_string().contains("unsupported blob store"), "{err}");
    }
}
