//! What the end-to-end tests share: the real binary started on a config, the fake Factorio
//! server as its own process, HTTP requests, and waiting with a hang guard.
#![allow(dead_code)]

pub mod bot;
pub mod cluster;
pub mod etcd;
pub mod fake_discord;
pub mod files;
pub mod otlp;
pub mod servers_yml;
pub mod toolchain;

pub use files::append;
#[allow(unused_imports)]
pub use servers_yml::{server, servers_yml};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GUARD: Duration = Duration::from_secs(60);

pub struct Isr {
    child: Child,
    pub port: u16,
    stderr: PathBuf,
}

impl Isr {
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_on(dir, config, free_port())
    }

    pub fn start_on(dir: &Path, config: &str, port: u16) -> Self {
        Self::start_with_env(dir, config, port, &[])
    }

    /// Starts with `config` and these environment variables besides the usual ones.
    pub fn start_with_env(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(dir, config, port, env, &[])
    }

    /// [`Isr::start_with_env`], the binary run by the command `wrapper` (its words, the
    /// binary's path and arguments appended), such as `unshare` with a script.
    pub fn start_wrapped(
        dir: &Path,
        config: &str,
        port: u16,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let config_path = dir.join("servers.yml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = dir.join(format!(
            "stderr-{}.log",
            std::process::id() as u64 * 1000 + port as u64
        ));
        let bin = env!("CARGO_BIN_EXE_factorio-isr");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("HEALTH_CHECK_HOST", "127.0.0.1")
            .env("HEALTH_CHECK_PORT", port.to_string())
            .env("FACTORIO_ISR_POLL_MS", "100")
            .env(
                "FACTORIO_ISR_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-plugin-cache"),
            )
            .env_remove("DISCORD_BOT_TOKEN")
            .env_remove("DISCORD_API_URL")
            .env_remove("FACTORIO_ISR_API_TOKEN")
            .env_remove("FACTORIO_ISR_API_READS")
            .env_remove("LOG_FORMAT")
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            port,
            stderr,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its log goes (readable after it has stopped).
    pub fn stderr_path(&self) -> PathBuf {
        self.stderr.clone()
    }

    /// The component `name` of `/ready`, if it is listed.
    pub fn component(&self, name: &str) -> Option<serde_json::Value> {
        let (_, body) = self.get("/ready")?;
        let ready: serde_json::Value = serde_json::from_str(&body).ok()?;
        ready["components"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// Starts with `config` and waits until every component is ready.
    pub fn start_ready(dir: &Path, config: &str) -> Self {
        let isr = Self::start(dir, config);
        isr.wait_started();
        wait_for("every component to be ready", || {
            isr.get("/ready").is_some_and(|(s, _)| s == 200)
        });
        isr
    }

    /// Waits until the process serves HTTP and has started every pipeline.
    pub fn wait_started(&self) {
        let listening = format!("HTTP listening on http://127.0.0.1:{}", self.port);
        wait_for("the process to start", || {
            let log = self.log();
            assert!(
                !log.contains("cannot serve HTTP"),
                "the host could not take its port {}:\n{log}",
                self.port
            );
            log.contains("started") && log.contains(&listening) && self.get("/healthz").is_some()
        });
    }

    /// Sends SIGTERM and waits for the exit; every task must have finished on its own
    /// (none left to the drain timeout).
    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_checked(true)
    }

    /// Like [`Isr::stop`], for a test where a task cannot finish (a hung sink).
    pub fn stop_with_stragglers(self) -> std::process::ExitStatus {
        self.stop_checked(false)
    }

    fn stop_checked(mut self, clean: bool) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 15) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(
                    !clean || !log.contains("did not stop within"),
                    "a task outlived the shutdown:\n{log}"
                );
                return status;
            }
            assert!(started.elapsed() < GUARD, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (hang guard 60 s) for the process to end by itself; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < GUARD, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (SIGSTOP 19, SIGCONT 18, ...) without waiting.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(self.child.id() as i32, signal) };
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Isr {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A port for a host under test to listen on. Taken below the kernel's ephemeral range
/// (32768 and up), where `bind(0)` and outgoing connections of other tests take theirs, so a
/// port handed out here cannot be taken by them before the host binds it; each test process
/// starts in its own stretch of the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 400) as u16 * 30;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + n) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The chat messages in the JSONL sink, with how often each appears.
pub fn delivered(jsonl: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in std::fs::read_to_string(jsonl).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(m) = v["message"].as_str() {
            *seen.entry(m.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

pub fn chat(i: usize) -> String {
    format!("2026-01-01 10:00:00 [CHAT] Alice: msg-{i}\n")
}

pub fn config(log: &Path, jsonl: &Path) -> String {
    format!(
        "servers:\n  prod:\n    log_path: {}\n    sinks:\n      - jsonl: {}\n",
        log.display(),
        jsonl.display()
    )
}

/// The fake Factorio server as its own process (`factorio-isr sim`).
pub struct SimProcess {
    child: Child,
    pub port: u16,
}

impl SimProcess {
    pub fn start(port: u16, password: &str, log: &Path) -> Self {
        Self::start_with(port, password, log, None)
    }

    /// Also writes a `factorio-current.log` at `current`.
    pub fn start_with(port: u16, password: &str, log: &Path, current: Option<&Path>) -> Self {
        use std::io::BufRead;
        let mut command = Command::new(env!("CARGO_BIN_EXE_factorio-isr"));
        command
            .args([
                "sim",
                "--rcon-port",
                &port.to_string(),
                "--password",
                password,
            ])
            .arg("--log")
            .arg(log);
        if let Some(current) = current {
            command.arg("--current-log").arg(current);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("sim said {first:?}"));
        Self { child, port }
    }

    /// Sends one command through `factorio-isr rcon`.
    pub fn rcon(config: &Path, command: &str) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
            .args(["rcon", "--config"])
            .arg(config)
            .args(["--server", "prod", "--timeout", "10", command])
            .output()
            .unwrap()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A "webhook" that accepts connections and never answers: its address, and the
/// connections it holds.
pub fn black_hole() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    (addr, held)
}

/// A stand-in for a Discord webhook that takes `delay` to answer each message (Discord's
/// pace) and refuses a message without content or over Discord's 2,000 characters;
/// returns its URL and the number of messages it took.
pub fn slow_webhook(delay: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/api/webhooks/{id}/{token}",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let count = count.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        // As Discord: a message needs content, of at most 2,000 characters
                        // (UTF-16 units).
                        let content = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["content"].as_str().map(|c| c.encode_utf16().count()));
                        match content {
                            Some(n) if (1..=2000).contains(&n) => {
                                count.fetch_add(1, Ordering::Relaxed);
                                axum::http::StatusCode::NO_CONTENT
                            }
                            _ => axum::http::StatusCode::BAD_REQUEST,
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{addr}/api/webhooks/1/slow"), taken)
}

/// Sends one HTTP request with an optional bearer token; the status and the body as JSON.
pub fn http_call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The path of `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A tool a test needs (`promtool`, `componentize-py`, ...): its path, or none with a
/// message saying the test skips; a failure instead when `FACTORIO_ISR_REQUIRE_TOOLS` is set
/// (`.ci/run` sets it after installing them all).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        assert!(
            std::env::var_os("FACTORIO_ISR_REQUIRE_TOOLS").is_none(),
            "{name} is not installed, and FACTORIO_ISR_REQUIRE_TOOLS says it must be"
        );
        eprintln!("skipped: {name} is not installed (.ci/run installs it)");
    }
    found
}
