//! A real etcd (Debian's `etcd-server`) on loopback, in its own data folder, that a test can
//! kill and start again on the same ports and data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http_get, wait_for};

pub struct Etcd {
    bin: PathBuf,
    dir: PathBuf,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd with its data in `dir`; none (the test skips) when it is not installed.
    pub fn start(dir: &Path) -> Option<Self> {
        let bin = super::tool("etcd")?;
        let mut etcd = Self {
            bin,
            dir: dir.to_path_buf(),
            client: free_port(),
            peer: free_port(),
            child: None,
        };
        etcd.spawn();
        Some(etcd)
    }

    /// The client URL, for `cluster.endpoints`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn spawn(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            // No metrics listener or proxy ports of its own beside these two.
            .env_remove("ETCD_LISTEN_METRICS_URLS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.client;
        wait_for("etcd to serve", || {
            http_get(port, "/health").is_some_and(|(s, body)| s == 200 && body.contains("true"))
        });
    }

    /// Kills etcd at once (SIGKILL), as a crash or a lost node would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with an empty data folder: everything it held is
    /// gone (a wiped volume, an emptyDir).
    pub fn wipe(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        std::thread::sleep(Duration::from_millis(100));
        self.spawn();
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        // The ports are free again once the process is reaped; give the kernel a moment.
        std::thread::sleep(Duration::from_millis(100));
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
