use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
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
}

/// Blobs on top of `object_store`: in memory for embedded intermediates, a local directory or
/// (in scale-out mode) S3 for what must outlive a process.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.store)
    }
}

impl BlobStore {
    /// Wraps any object store.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
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

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        let size = bytes.len() as u64;
        self.store
            .put(&StorePath::from(key), PutPayload::from(bytes))
            .await?;
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

    /// Number of blobs under `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<usize, BlobError> {
        let folder = StorePath::from(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self.store.list(Some(&folder)).try_collect().await?;
        Ok(metas.len())
    }
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
}
