//! A real S3-compatible server: moto's server (PyPI `moto[server]`), started per test on a
//! free loopback port, with one bucket.

use std::process::{Child, Command, Stdio};

use unmark_broker::{BlobConfig, BlobStore};

use crate::procs::{free_port, python_tool, wait_for_port};

/// A running server, killed on drop.
pub(crate) struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) endpoint: String,
}

/// The bucket every test uses.
pub(crate) const BUCKET: &str = "unmark-test";

impl S3Server {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        let bin = python_tool("moto_server", "MOTO_SERVER_BIN");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (run scripts/setup.sh): {e}"));
        wait_for_port(port, "moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        // moto takes any credentials; a bucket is one PUT.
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{BUCKET}"))
            .send()
            .await
            .expect("create bucket");
        assert!(created.status().is_success(), "{}", created.status());
        Self { child, endpoint }
    }

    /// The blob settings of a store under `prefix` in the bucket.
    pub(crate) fn blob_config(&self, prefix: &str) -> BlobConfig {
        BlobConfig {
            url: format!("s3://{BUCKET}/{prefix}"),
            fsync: false,
            s3_endpoint: self.endpoint.clone(),
            s3_region: "us-east-1".into(),
            s3_allow_http: true,
            s3_access_key_id: "test".into(),
            s3_secret_access_key: "test".into(),
        }
    }

    /// The same settings as `UNMARK_*` variables, for unmark processes.
    pub(crate) fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("UNMARK_BLOBS__URL", format!("s3://{BUCKET}/{prefix}")),
            ("UNMARK_BLOBS__S3_ENDPOINT", self.endpoint.clone()),
            ("UNMARK_BLOBS__S3_ALLOW_HTTP", "true".into()),
            // Through the environment, as an operator would.
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blob_store_works_on_s3() {
    let s3 = S3Server::start().await;
    let store = BlobStore::open(&s3.blob_config("unit")).expect("open");
    let a = store
        .put("jobs/a/in-input", "abc".into())
        .await
        .expect("put");
    store
        .put("jobs/a/4-encode-result", "r".into())
        .await
        .expect("put");
    store.put("jobs/b/in-input", "x".into()).await.expect("put");
    assert_eq!(&store.get(&a).await.expect("get")[..], b"abc");
    assert!(store.exists("jobs/a/in-input").await.expect("head"));
    assert!(!store.exists("jobs/a/nothing").await.expect("head"));
    let jobs = store.jobs().await.expect("list");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs["a"].keys.len(), 2);
    assert_eq!(store.delete_prefix("jobs/a/").await.expect("delete"), 2);
    assert_eq!(store.count("jobs/").await.expect("count"), 1);
}
