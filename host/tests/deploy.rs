//! The deployment files, used the way operators use them: the Dockerfile linted (hadolint),
//! the image built without a registry and run with chroot (umoci), `compose.yaml` validated
//! (docker-compose), the Kubernetes manifests validated offline (kubernetes-validate), the
//! alert rules unit-tested (promtool), a real Prometheus scraping `demo`, and every query of
//! the Grafana dashboard run against it.
//!
//! Each test needs its tool; where the tool is absent it says so and passes, unless
//! `FACTORIO_ISR_REQUIRE_TOOLS` is set (`.ci/run` sets it after installing them).

mod common;

use common::{tool, which};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn yaml(path: &Path) -> serde_norway::Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Dockerfile, Compose, Kubernetes

#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint") else {
        return;
    };
    run(Command::new(hadolint).arg(repo().join("Dockerfile")));
}

#[test]
fn compose_is_valid_and_mounts_only_files_that_exist() {
    let root = repo();
    let compose = root.join("compose.yaml");
    let mut doc = yaml(&compose);
    doc.apply_merge().unwrap();
    let services = doc["services"].as_mapping().unwrap();
    let mut checked = 0;
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    root.join(source).exists(),
                    "{name:?} mounts {source}, which is not in the repository"
                );
                checked += 1;
            }
        }
    }
    for (name, secret) in doc["secrets"].as_mapping().unwrap() {
        let file = secret["file"].as_str().unwrap();
        assert!(
            root.join(file).is_file(),
            "secret {name:?}: {file} is missing"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} mounts checked");

    // Two instances in cluster mode on the etcd service, with state volumes of their own.
    let service = |name: &str| &services[&serde_norway::Value::from(name)];
    for (name, id) in [("factorio-isr", "isr-1"), ("factorio-isr-2", "isr-2")] {
        let s = service(name);
        assert_eq!(s["hostname"].as_str(), Some(id), "{name}");
        assert_eq!(
            s["environment"]["FACTORIO_ISR_ETCD_ENDPOINTS"].as_str(),
            Some("http://etcd:2379"),
            "{name}"
        );
    }
    assert_ne!(
        service("factorio-isr")["volumes"][2],
        service("factorio-isr-2")["volumes"][2]
    );
    assert!(service("etcd")["image"].as_str().unwrap().contains("etcd"));

    // The host reads exactly the secrets compose gives it.
    let isr = &services[&serde_norway::Value::from("factorio-isr")];
    let secrets: BTreeSet<&str> = isr["secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        secrets,
        BTreeSet::from([
            "RCON_PASSWORD",
            "DISCORD_BOT_TOKEN",
            "FACTORIO_ISR_API_TOKEN"
        ])
    );
    // Prometheus loads the rules file it is given.
    let prometheus = yaml(&root.join("config/prometheus/prometheus.yml"));
    assert_eq!(
        prometheus["rule_files"][0].as_str(),
        Some("/etc/prometheus/rules/factorio-isr.rules.yml")
    );
    check_config(&root.join("config/compose/servers.yml"));

    if let Some(compose_tool) = tool("docker-compose") {
        run(Command::new(compose_tool)
            .arg("-f")
            .arg(&compose)
            .args(["config", "-q"])
            .current_dir(&root));
    }
}

/// `factorio-isr check` accepts a servers.yml (its logs need not exist yet).
fn check_config(path: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(path)
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-plugin-cache"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check {} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_validate_and_carry_the_repository_files() {
    let root = repo();
    let dir = root.join("config/kubernetes");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let resources: Vec<PathBuf> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| dir.join(r.as_str().unwrap()))
        .collect();
    let mut kinds = BTreeMap::new();
    for file in &resources {
        let doc = yaml(file);
        kinds.insert(doc["kind"].as_str().unwrap().to_owned(), doc);
    }
    for kind in [
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} among {resources:?}");
    }

    // Three replicas in cluster mode, rolled one at a time, never two on a node, at most
    // one disrupted by choice; locked down.
    let deployment = &kinds["Deployment"];
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(3));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(1)
    );
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"].as_str(), Some("kubernetes.io/hostname"));
    assert_eq!(&anti["labelSelector"]["matchLabels"], labels);
    let pdb = &kinds["PodDisruptionBudget"]["spec"];
    assert_eq!(pdb["maxUnavailable"].as_u64(), Some(1));
    assert_eq!(&pdb["selector"]["matchLabels"], labels);
    let env: Vec<&str> = pod["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env.contains(&"FACTORIO_ISR_ETCD_ENDPOINTS"), "{env:?}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The patterns ConfigMap holds exactly the repository's pattern files.
    let patterns = yaml(&dir.join("patterns.yaml"));
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("patterns")).unwrap() {
        let path = entry.unwrap().path();
        // The packs (patterns/packs) are built into the binary and named in servers.yml.
        if path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            patterns["data"][name].as_str(),
            Some(std::fs::read_to_string(&path).unwrap().as_str()),
            "config/kubernetes/patterns.yaml differs from patterns/{name}: copy it over"
        );
        files += 1;
    }
    assert_eq!(patterns["data"].as_mapping().unwrap().len(), files);
    // The servers.yml of the ConfigMap is one the host accepts.
    let config = yaml(&dir.join("configmap.yaml"));
    let scratch = tempfile::tempdir().unwrap();
    let servers = scratch.path().join("servers.yml");
    std::fs::write(&servers, config["data"]["servers.yml"].as_str().unwrap()).unwrap();
    check_config(&servers);

    let Some(validate) = tool("kubernetes-validate") else {
        return;
    };
    run(Command::new(&validate).arg("--strict").args(&resources));
    // What `kubectl apply -k` would send, where kubectl is at hand.
    if let Some(kubectl) = which("kubectl") {
        let out = run(Command::new(kubectl).arg("kustomize").arg(&dir));
        let rendered = scratch.path().join("rendered.yaml");
        std::fs::write(&rendered, out.stdout).unwrap();
        run(Command::new(&validate).arg("--strict").arg(&rendered));
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus: the rules' unit tests, and a real Prometheus scraping the demo

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo().join("config/prometheus");
    run(Command::new(&promtool)
        .args(["check", "rules", "factorio-isr.rules.yml"])
        .current_dir(&dir));
    let out = run(Command::new(&promtool)
        .args(["test", "rules", "factorio-isr.rules.test.yml"])
        .current_dir(&dir));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    // Every alert of the rules file has a test.
    let rules = std::fs::read_to_string(dir.join("factorio-isr.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("factorio-isr.rules.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no test"
        );
    }
}

/// A process that is sent SIGTERM (then killed) when the test is done with it.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `factorio-isr demo` on a port of its own, once both servers have a UPS reading.
fn start_demo(port: u16) -> Process {
    let demo = Process(
        Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
            .args(["demo", "--activity-ms", "200", "--status-every", "3600"])
            .env("HEALTH_CHECK_PORT", port.to_string())
            .env("HEALTH_CHECK_HOST", "127.0.0.1")
            .env(
                "FACTORIO_ISR_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-plugin-cache"),
            )
            .env_remove("DISCORD_BOT_TOKEN")
            .env_remove("LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the demo's UPS readings", || {
        common::http_get(port, "/metrics").is_some_and(|(_, body)| {
            ["nauvis", "legacy"]
                .iter()
                .all(|s| body.contains(&format!("factorio_isr_ups{{server=\"{s}\"}}")))
        })
    });
    demo
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET as HTTP/1.0, so that Prometheus (Go) answers without chunked encoding.
fn get_json(port: u16, path: &str) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Some((status, serde_json::from_str(body).unwrap_or_default()))
}

/// A Prometheus query's answer (`data`), asserting it succeeded.
fn query(port: u16, promql: &str) -> Value {
    let (status, answer) = get_json(port, &format!("/api/v1/query?query={}", encode(promql)))
        .unwrap_or_else(|| panic!("no answer from Prometheus for {promql}"));
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("success")),
        "{promql}: {answer}"
    );
    answer["data"].clone()
}

/// The `server` labels of a query's vector.
fn servers_of(data: &Value) -> BTreeSet<String> {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metric"]["server"].as_str().map(str::to_owned))
        .collect()
}

/// The metric families a live `/metrics` exports (histograms by their family name).
fn families(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_demo_and_runs_the_rules_and_the_dashboard() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let root = repo();
    let demo_port = common::free_port();
    let _demo = start_demo(demo_port);

    // The live exposition passes Prometheus's own lint.
    let (_, metrics) = common::http_get(demo_port, "/metrics").unwrap();
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let linted = lint.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: factorio-isr\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{demo_port}\"]\n",
            rules = root.join("config/prometheus/factorio-isr.rules.yml")
        ),
    )
    .unwrap();
    let prom_port = common::free_port();
    let _prometheus = Process(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let both = BTreeSet::from(["legacy".to_owned(), "nauvis".to_owned()]);
    common::wait_for("Prometheus to have scraped both servers' UPS", || {
        common::http_get(prom_port, "/-/ready").is_some_and(|(s, _)| s == 200)
            && servers_of(&query(prom_port, "factorio_isr_ups")) == both
    });
    assert_eq!(
        servers_of(&query(prom_port, "factorio_isr_players_online")),
        both
    );
    assert_eq!(servers_of(&query(prom_port, "factorio_isr_ups_ema")), both);
    common::wait_for("events of both servers in Prometheus", || {
        servers_of(&query(
            prom_port,
            "sum by (server) (factorio_isr_events_processed_total) > 0",
        )) == both
    });
    assert_eq!(
        query(prom_port, r#"up{job="factorio-isr"}"#)["result"][0]["value"][1].as_str(),
        Some("1")
    );

    // The alert rules load and evaluate on real series without errors.
    common::wait_for("every rule to be evaluated", || {
        let (_, answer) = get_json(prom_port, "/api/v1/rules").unwrap();
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for rule in &rules {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        rules.len() >= 14 && rules.iter().all(|r| r["health"] == "ok")
    });

    // Every dashboard query parses, runs in this Prometheus, and names only metrics the host
    // exports.
    let exported = families(&common::http_get(demo_port, "/metrics").unwrap().1);
    let documented = std::fs::read_to_string(root.join("docs/observability.md")).unwrap();
    for family in &exported {
        assert!(
            documented.contains(&format!("`{family}`")),
            "{family} is exported but not in docs/observability.md"
        );
    }
    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "only {} queries", queries.len());
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (panel, expr)) in queries.iter().enumerate() {
        let expr = substitute(expr);
        query(prom_port, &expr);
        for name in metric_names(&expr) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(*f)))
                .unwrap_or(&name);
            assert!(
                exported.contains(family)
                    || name == "up"
                    || ONLY_WITH_A_CANDIDATE.contains(&family),
                "panel {panel:?} names {name}, which the host does not export"
            );
        }
        recording.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let rules_file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&rules_file, recording).unwrap();
    run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules_file));
}

/// Series that exist only while a compare-mode candidate runs (the demo runs none).
const ONLY_WITH_A_CANDIDATE: [&str; 1] = ["factorio_isr_plugin_discrepancies_total"];

/// Every panel's queries, as (panel title, PromQL with Grafana's variables).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo().join("config/grafana/dashboards/factorio-isr.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                out.push((title, target["expr"].as_str().unwrap().to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables as a query of "all servers" would have them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$server", ".*")
        .replace("$instance", ".*")
}

/// The metric names an expression reads: `factorio_isr_*` identifiers outside label
/// matchers and strings, and `up{...}`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let (mut i, mut in_braces) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1 + usize::from(bytes[i] == b'\\');
                }
            }
            b'{' => in_braces = true,
            b'}' => in_braces = false,
            c if (c.is_ascii_alphabetic() || c == b'_') && !in_braces => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &expr[start..i];
                if word.starts_with("factorio_isr_") || (word == "up" && expr[i..].starts_with('{'))
                {
                    names.insert(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

// ---------------------------------------------------------------------------------------
// The image, built from a static binary without a registry, run with chroot

/// The static binary to put in the image: `FACTORIO_ISR_IMAGE_BINARY` (`.ci/run` builds one
/// for x86_64-unknown-linux-musl).
/// The binary to put in the image: `FACTORIO_ISR_IMAGE_BINARY` (a static build, as the
/// Dockerfile makes), else the one these tests built, packed with the shared libraries it
/// links (`build.sh --with-libs`), so CI does not build every crate again for musl.
fn image_binary() -> (PathBuf, bool) {
    match std::env::var_os("FACTORIO_ISR_IMAGE_BINARY") {
        Some(path) => (PathBuf::from(path), false),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_factorio-isr")), true),
    }
}

/// The instructions of the Dockerfile's last stage, by keyword (a keyword may repeat).
fn final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..]
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// `KEY=VALUE` pairs of an ENV or LABEL instruction (values quoted or bare).
fn pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = next.trim();
    }
    out
}

fn blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn the_image_builds_without_a_registry_and_runs_under_chroot() {
    let (binary, with_libs) = image_binary();
    let (Some(umoci), Some(chroot)) = (tool("umoci"), tool("chroot")) else {
        return;
    };
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let version = env!("CARGO_PKG_VERSION");
    let mut build = Command::new(root.join("config/image/build.sh"));
    if with_libs {
        build.arg("--with-libs");
    }
    run(build.arg(&binary).arg(&layout).arg("test"));

    // The image's configuration is the Dockerfile's.
    let index = blob_index(&layout);
    let manifest = blob(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let image = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    let config = &image["config"];
    let stage = final_stage();
    let one = |key: &str| -> String {
        stage
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in the Dockerfile's last stage"))
    };
    assert_eq!(config["User"].as_str(), Some(one("USER").as_str()));
    let json_list = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    assert_eq!(config["Entrypoint"], json_list(one("ENTRYPOINT")));
    assert_eq!(config["Cmd"], json_list(one("CMD")));
    assert_eq!(config["WorkingDir"].as_str(), Some(one("WORKDIR").as_str()));
    assert!(
        config["ExposedPorts"][one("EXPOSE")].is_object(),
        "{config}"
    );
    for volume in json_list(one("VOLUME")).as_array().unwrap() {
        assert!(
            config["Volumes"][volume.as_str().unwrap()].is_object(),
            "{config}"
        );
    }
    let env: BTreeSet<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for (key, value) in pairs(&one("ENV")) {
        assert!(
            env.contains(format!("{key}={value}").as_str()),
            "{key} in {env:?}"
        );
    }
    for (key, value) in pairs(&one("LABEL")) {
        let value = value.replace("${VERSION}", version);
        assert_eq!(
            config["Labels"][&key].as_str(),
            Some(value.as_str()),
            "{key}"
        );
    }

    // Its files: the binary, the stock patterns, /state for uid 10001, a user to run as.
    let bundle = dir.path().join("bundle");
    run(Command::new(&umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata(rootfs.join("state")).unwrap();
    assert_eq!((state.uid(), state.gid()), (10001, 10001));
    assert!(rootfs.join("patterns/vanilla.yml").is_file());
    assert!(
        std::fs::read_to_string(rootfs.join("etc/passwd"))
            .unwrap()
            .contains(":10001:10001:")
    );
    let size = std::fs::metadata(rootfs.join("factorio-isr"))
        .unwrap()
        .len();
    eprintln!("image binary: {} MiB", size >> 20);

    // The binary runs inside, as the image's user, with nothing of this machine.
    let inside = |args: &[&str]| -> Command {
        let mut cmd = Command::new(&chroot);
        cmd.arg("--userspec=10001:10001")
            .arg(&rootfs)
            .arg("/factorio-isr")
            .args(args)
            .env_clear()
            .env("FACTORIO_ISR_CACHE_DIR", "/state/plugin-cache")
            .env("FACTORIO_ISR_STATE_DIR", "/state");
        cmd
    };
    let out = run(&mut inside(&["--version"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains(version));
    std::fs::copy(
        root.join("config/compose/servers.yml"),
        rootfs.join("config/servers.yml"),
    )
    .unwrap();
    run(&mut inside(&["check", "--config", "/config/servers.yml"]));

    let port = common::free_port();
    let port_text = port.to_string();
    let _demo = Process(
        inside(&["demo", "--http-port", &port_text, "--status-every", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the demo in the image to answer /healthz", || {
        common::http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    // The image's own health check (no shell, no curl) says the same.
    run(&mut inside(&["healthcheck", "--port", &port_text]));
}

fn blob_index(layout: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}
