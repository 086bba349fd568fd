//! Every etcd call cluster mode makes, in one place. With the `cluster` feature they go
//! through etcd-client (whose build needs `protoc`); a build without it has no etcd client
//! and every call says so, so the rest of the host compiles and runs the same either way.

use super::ClusterError;
use crate::config::ClusterSettings;

/// One key as etcd has it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: Vec<u8>,
    pub(super) create_revision: i64,
    pub(super) lease: i64,
}

/// What a keep-alive found.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(super) enum Renewal {
    /// Renewed for the lease's whole TTL.
    Renewed,
    /// etcd no longer has the lease: it expired.
    Expired,
}

#[cfg(feature = "cluster")]
pub(super) use with_etcd::Etcd;
#[cfg(not(feature = "cluster"))]
pub(super) use without_etcd::Etcd;

#[cfg(feature = "cluster")]
mod with_etcd {
    use std::time::Duration;

    use anyhow::Context;
    use etcd_client::{
        Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp,
    };

    use super::{ClusterError, ClusterSettings, Entry, Renewal};

    impl From<etcd_client::Error> for ClusterError {
        fn from(e: etcd_client::Error) -> Self {
            Self::Etcd(e.to_string())
        }
    }

    /// etcd, through a client made on first use (etcd may be down when the host starts;
    /// each call tries again).
    pub(in crate::cluster) struct Etcd {
        endpoints: Vec<String>,
        options: ConnectOptions,
        client: tokio::sync::Mutex<Option<Client>>,
    }

    fn entry(kv: &etcd_client::KeyValue) -> Entry {
        Entry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }

    impl Etcd {
        pub(in crate::cluster) fn new(settings: &ClusterSettings) -> anyhow::Result<Self> {
            let mut options = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(settings.lease_ttl.min(Duration::from_secs(5)))
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
            if let Some((user, password)) = &settings.user {
                options = options.with_user(user.clone(), password.expose().to_owned());
            }
            if let Some(tls) = &settings.tls {
                // PEM files are small; a FIFO or device here must not hang the start.
                let read = |p: &std::path::Path| {
                    crate::files::read_regular(p, 1 << 20)
                        .with_context(|| format!("cluster.tls: cannot read {}", p.display()))
                };
                let mut t = etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?));
                if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                    t = t.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
                }
                if let Some(d) = &tls.domain {
                    t = t.domain_name(d.clone());
                }
                options = options.with_tls(t);
            }
            Ok(Self {
                endpoints: settings.endpoints.clone(),
                options,
                client: tokio::sync::Mutex::new(None),
            })
        }

        async fn client(&self) -> Result<Client, ClusterError> {
            let mut held = self.client.lock().await;
            if let Some(c) = &*held {
                return Ok(c.clone());
            }
            let c = Client::connect(&self.endpoints, Some(self.options.clone())).await?;
            *held = Some(c.clone());
            Ok(c)
        }

        pub(in crate::cluster) async fn range(
            &self,
            prefix: &str,
        ) -> Result<Vec<Entry>, ClusterError> {
            let resp = self
                .client()
                .await?
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await?;
            Ok(resp.kvs().iter().map(entry).collect())
        }

        pub(in crate::cluster) async fn get(
            &self,
            key: &str,
        ) -> Result<Option<Entry>, ClusterError> {
            let resp = self.client().await?.get(key, None).await?;
            Ok(resp.kvs().first().map(entry))
        }

        /// Puts `key` under `lease` if nobody has it; its create revision when it did.
        pub(in crate::cluster) async fn create(
            &self,
            key: &str,
            value: &str,
            lease: i64,
        ) -> Result<Option<i64>, ClusterError> {
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let resp = self.client().await?.txn(txn).await?;
            Ok(resp
                .succeeded()
                .then(|| resp.header().map_or(0, |h| h.revision())))
        }

        /// Puts every one of `puts` if nobody has the first of them; whether it did.
        pub(in crate::cluster) async fn create_all(
            &self,
            puts: Vec<(String, Vec<u8>)>,
        ) -> Result<bool, ClusterError> {
            let Some((first, _)) = puts.first() else {
                return Ok(false);
            };
            let guard = Compare::create_revision(first.as_str(), CompareOp::Equal, 0);
            let ops: Vec<TxnOp> = puts
                .iter()
                .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
                .collect();
            let txn = Txn::new().when([guard]).and_then(ops);
            Ok(self.client().await?.txn(txn).await?.succeeded())
        }

        /// Runs `puts` and `deletes` only while `guard`'s create revision is `token`;
        /// whether they ran.
        pub(in crate::cluster) async fn write_if(
            &self,
            guard: &str,
            token: i64,
            puts: Vec<(String, Vec<u8>)>,
            deletes: Vec<String>,
        ) -> Result<bool, ClusterError> {
            let mut ops: Vec<TxnOp> = puts
                .into_iter()
                .map(|(k, v)| TxnOp::put(k, v, None))
                .collect();
            ops.extend(deletes.into_iter().map(|k| TxnOp::delete(k, None)));
            let txn = Txn::new()
                .when([Compare::create_revision(guard, CompareOp::Equal, token)])
                .and_then(ops);
            Ok(self.client().await?.txn(txn).await?.succeeded())
        }

        /// A new lease of `ttl` seconds: its id and the TTL etcd granted.
        pub(in crate::cluster) async fn grant(&self, ttl: i64) -> Result<(i64, i64), ClusterError> {
            let granted = self.client().await?.lease_grant(ttl, None).await?;
            Ok((granted.id(), granted.ttl()))
        }

        pub(in crate::cluster) async fn put_leased(
            &self,
            key: &str,
            value: &str,
            lease: i64,
        ) -> Result<(), ClusterError> {
            self.client()
                .await?
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await?;
            Ok(())
        }

        pub(in crate::cluster) async fn keep_alive(
            &self,
            lease: i64,
        ) -> Result<Renewal, ClusterError> {
            // The client sends one keep-alive on opening the stream and fails unless etcd
            // renewed the lease in answer.
            match self.client().await?.lease_keep_alive(lease).await {
                Ok(_) => Ok(Renewal::Renewed),
                Err(etcd_client::Error::LeaseKeepAliveError(e)) if e.contains("not found") => {
                    Ok(Renewal::Expired)
                }
                Err(e) => Err(e.into()),
            }
        }

        pub(in crate::cluster) async fn revoke(&self, lease: i64) -> Result<(), ClusterError> {
            self.client().await?.lease_revoke(lease).await?;
            Ok(())
        }

        pub(in crate::cluster) async fn delete(&self, key: &str) -> Result<(), ClusterError> {
            self.client().await?.delete(key, None).await?;
            Ok(())
        }
    }
}

#[cfg(not(feature = "cluster"))]
mod without_etcd {
    use super::{ClusterError, ClusterSettings, Entry, Renewal};

    const MISSING: &str = "this build has no etcd client: build with `--features cluster` (it needs protoc, from Debian's protobuf-compiler) for cluster mode";

    /// No etcd: every call fails.
    pub(in crate::cluster) struct Etcd;

    fn missing<T>() -> Result<T, ClusterError> {
        Err(ClusterError::Etcd(MISSING.into()))
    }

    impl Etcd {
        pub(in crate::cluster) fn new(_: &ClusterSettings) -> anyhow::Result<Self> {
            anyhow::bail!("servers.yml has a cluster section, but {MISSING}")
        }

        pub(in crate::cluster) async fn range(&self, _: &str) -> Result<Vec<Entry>, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn get(&self, _: &str) -> Result<Option<Entry>, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn create(
            &self,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<Option<i64>, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn create_all(
            &self,
            _: Vec<(String, Vec<u8>)>,
        ) -> Result<bool, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn write_if(
            &self,
            _: &str,
            _: i64,
            _: Vec<(String, Vec<u8>)>,
            _: Vec<String>,
        ) -> Result<bool, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn grant(&self, _: i64) -> Result<(i64, i64), ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn put_leased(
            &self,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<(), ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn keep_alive(&self, _: i64) -> Result<Renewal, ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn revoke(&self, _: i64) -> Result<(), ClusterError> {
            missing()
        }

        pub(in crate::cluster) async fn delete(&self, _: &str) -> Result<(), ClusterError> {
            missing()
        }
    }
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::Etcd as Store;
    use crate::config::{ClusterSettings, TlsSettings};

    /// A FIFO where the CA should be is refused at once, naming it, instead of hanging the
    /// start on a read that never ends.
    #[test]
    fn a_fifo_for_a_tls_file_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let c = std::ffi::CString::new(ca.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let settings = ClusterSettings {
            endpoints: vec!["http://127.0.0.1:1".into()],
            instance_id: "a".into(),
            lease_ttl: std::time::Duration::from_secs(10),
            prefix: "/t/".into(),
            tls: Some(TlsSettings {
                ca: ca.clone(),
                cert: None,
                key: None,
                domain: None,
            }),
            user: None,
        };
        let e = format!("{:#}", Store::new(&settings).err().unwrap());
        assert!(e.contains("cluster.tls") && e.contains("FIFO"), "{e}");
    }
}
