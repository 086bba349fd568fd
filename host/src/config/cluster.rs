//! Cluster mode's settings: servers.yml's `cluster:` section, and the environment variables
//! that set or override it (so every instance can share one servers.yml and differ only in
//! its environment).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::Secret;

/// How this instance joins a cluster of instances that share servers.yml and an etcd
/// cluster. Off unless `cluster.endpoints` (or `FACTORIO_ISR_ETCD_ENDPOINTS`) is given.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// etcd's client URLs (`http://etcd-0:2379`).
    pub endpoints: Vec<String>,
    /// This instance's name, unique in the cluster (default: the host name).
    pub instance_id: String,
    /// How long an instance's lease outlives its last keep-alive: the longest a server
    /// stays unowned after its owner dies, and the longest a cut-off owner keeps working.
    pub lease_ttl: Duration,
    /// Under which etcd key prefix the cluster keeps everything (one cluster per prefix).
    pub prefix: String,
    pub tls: Option<TlsSettings>,
    /// etcd user and password, when etcd has authentication on.
    pub user: Option<(String, Secret)>,
}

/// TLS to etcd: its CA, and a client certificate when etcd asks for one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The CA that signed etcd's certificate (PEM).
    pub ca: PathBuf,
    /// This instance's certificate and key (PEM), for etcd's `--client-cert-auth`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name etcd's certificate is for, when it is not the endpoint's host.
    #[serde(default)]
    pub domain: Option<String>,
}

/// servers.yml's `cluster:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterSection {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    instance_id: Option<String>,
    /// Seconds.
    #[serde(default)]
    lease_ttl: Option<u64>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    tls: Option<TlsSettings>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
}

/// Which cluster setting is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterSettingsError {
    #[error("cluster.endpoints: `{0}` is not an etcd client URL (http://host:2379 or https://…)")]
    Endpoint(String),
    #[error("cluster.instance_id: no instance id given and no host name found")]
    NoInstanceId,
    #[error(
        "cluster.instance_id: `{0}` is not an instance id (1 to 64 of letters, digits, -, _ and .)"
    )]
    InstanceId(String),
    #[error("FACTORIO_ISR_ETCD_LEASE_TTL: `{0}` is not a number of seconds")]
    LeaseTtlNotANumber(String),
    #[error("cluster.lease_ttl: {0} s is not between 2 and 300")]
    LeaseTtl(u64),
    #[error("cluster: give both username and password, or neither")]
    HalfCredentials,
    #[error("cluster.tls: give both cert and key, or neither")]
    HalfTls,
}

/// The lease when none is set: a dead owner's servers move within this, plus a little.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

impl ClusterSection {
    /// The settings, with the environment's `FACTORIO_ISR_ETCD_*` and
    /// `FACTORIO_ISR_INSTANCE_ID` over what the file says; none when no endpoint is given.
    /// An error says which setting is wrong.
    pub(super) fn settle(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ClusterSettings>, ClusterSettingsError> {
        let set = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let endpoints = endpoints(set("FACTORIO_ISR_ETCD_ENDPOINTS"), self.endpoints)?;
        if endpoints.is_empty() {
            return Ok(None);
        }
        let instance_id = instance_id(
            set("FACTORIO_ISR_INSTANCE_ID")
                .or(self.instance_id)
                .or_else(|| set("HOSTNAME"))
                .or_else(host_name),
        )?;
        let ttl = match set("FACTORIO_ISR_ETCD_LEASE_TTL") {
            Some(t) => {
                (t.parse::<u64>()).map_err(|_| ClusterSettingsError::LeaseTtlNotANumber(t))?
            }
            None => self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL.as_secs()),
        };
        if !(2..=300).contains(&ttl) {
            return Err(ClusterSettingsError::LeaseTtl(ttl));
        }
        let mut prefix = set("FACTORIO_ISR_ETCD_PREFIX")
            .or(self.prefix)
            .unwrap_or_else(|| "/factorio-isr/".into());
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let username = set("FACTORIO_ISR_ETCD_USER").or(self.username);
        let password = set("FACTORIO_ISR_ETCD_PASSWORD")
            .map(Secret::new)
            .or(self.password);
        let user = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err(ClusterSettingsError::HalfCredentials),
        };
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(ClusterSettingsError::HalfTls);
        }
        Ok(Some(ClusterSettings {
            endpoints,
            instance_id,
            lease_ttl: Duration::from_secs(ttl),
            prefix,
            tls: self.tls,
            user,
        }))
    }
}

/// The endpoints of the environment's comma-separated list, else the file's; each must be
/// an etcd client URL.
fn endpoints(
    from_env: Option<String>,
    in_file: Vec<String>,
) -> Result<Vec<String>, ClusterSettingsError> {
    let endpoints: Vec<String> = match from_env {
        Some(list) => list
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        None => in_file,
    };
    match endpoints
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        Some(e) => Err(ClusterSettingsError::Endpoint(e.clone())),
        None => Ok(endpoints),
    }
}

/// The instance id given (or the host name), if it is one: 1 to 64 of letters, digits,
/// `-`, `_` and `.`.
fn instance_id(given: Option<String>) -> Result<String, ClusterSettingsError> {
    let id = given.ok_or(ClusterSettingsError::NoInstanceId)?;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ClusterSettingsError::InstanceId(id));
    }
    Ok(id)
}

/// The machine's host name (a container's is its name, a pod's its pod name).
/// This machine's host name (`$HOSTNAME` is not always exported).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Result<Option<ClusterSettings>, ClusterSettingsError> {
        let section: ClusterSection = serde_norway::from_str(yaml).unwrap();
        section.settle(&|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn off_without_endpoints_and_the_environment_overrides_the_file() {
        assert_eq!(settle("{}", &[]), Ok(None));
        let s = settle(
            "endpoints: [http://etcd:2379]\ninstance_id: isr-a\nlease_ttl: 5\nprefix: /x\n",
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.instance_id, "isr-a");
        assert_eq!(s.lease_ttl, Duration::from_secs(5));
        assert_eq!(s.prefix, "/x/");
        let s = settle(
            "endpoints: [http://etcd:2379]\ninstance_id: isr-a\n",
            &[
                (
                    "FACTORIO_ISR_ETCD_ENDPOINTS",
                    "http://a:2379, http://b:2379",
                ),
                ("FACTORIO_ISR_INSTANCE_ID", "isr-b"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(s.instance_id, "isr-b");
        assert_eq!(s.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(s.prefix, "/factorio-isr/");
    }

    #[test]
    fn wrong_settings_say_which() {
        let e = settle("endpoints: [etcd:2379]\ninstance_id: a\n", &[]).unwrap_err();
        assert_eq!(e, ClusterSettingsError::Endpoint("etcd:2379".into()));
        assert!(
            e.to_string().starts_with("cluster.endpoints: `etcd:2379`"),
            "{e}"
        );
        let e = settle("endpoints: [http://e:2379]\ninstance_id: 'a b'\n", &[]).unwrap_err();
        assert_eq!(e, ClusterSettingsError::InstanceId("a b".into()));
        let e = settle(
            "endpoints: [http://e:2379]\ninstance_id: a\nlease_ttl: 1\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e, ClusterSettingsError::LeaseTtl(1));
        assert!(e.to_string().contains("between 2 and 300"), "{e}");
        let e = settle(
            "endpoints: [http://e:2379]\ninstance_id: a\nusername: u\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e, ClusterSettingsError::HalfCredentials);
    }
}
