//! Finding and waiting for helper processes; only `std`, so the benches can include it too.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// A command that pip installed: `$override_var`, else `name` on the PATH, else Python's
/// scripts folder (pyenv exposes new scripts on the PATH only after a rehash).
pub(crate) fn python_tool(name: &str, override_var: &str) -> String {
    if let Ok(bin) = std::env::var(override_var) {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    if on_path {
        return name.to_owned();
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{scripts}/{name}")
}

/// A free TCP port on the loopback interface.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits until something listens on `port`, or panics naming `what`.
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
