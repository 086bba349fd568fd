//! The plugin runtime: one wasmtime engine for the process, components compiled once and
//! cached on disk, and instances that run in a sandbox where a fault fails one batch of one
//! plugin and nothing else.
//!
//! - [`Runtime`] loads `.wasm` bytes into a [`Plugin`] (checked, compiled, world identified).
//! - [`Plugin::parser`] / [`Plugin::monitor`] make a per-server [`Instance`].
//! - [`Instance`] calls into the guest under a deadline and a memory cap; on a trap it is
//!   re-created (and re-initialised) before the next call.

mod batch;
mod bindings;
mod board;
mod cache;
mod chain;
pub mod compile;
mod declared;
mod fault;
mod idle;
mod instance;
mod roles;
mod sandbox;
pub mod stock;
mod world;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

pub use batch::MAX_EVENTS_PER_LINE;
pub use board::{PluginBoard, PluginStatus};
pub use cache::{CacheOutcome, ComponentCache, LoadReport};
pub use chain::{ChainOutput, ParserChain};
pub use instance::{Fault, Instance, PluginStats};
pub use roles::{MonitorInstance, ParserInstance};
pub use world::{SUPPORTED_WIT_VERSIONS, Version, WIT_PACKAGE, WorldInfo, WorldKind};

pub use bindings::{
    WitAlert, WitAlertState, WitEvent, WitRule, WitRuleMatch, WitSample, WitSeverity, WitSpan,
};
use sandbox::SandboxState;

/// The sandbox limits every instance gets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Wall time one call (`parse`, `on-events`, `on-sample`) may take...
    pub call_timeout: Duration,
    /// ...plus this much per MiB of text handed over, so that a batch with a 1 MB line is
    /// not mistaken for a runaway plugin.
    pub timeout_per_mib: Duration,
    /// Wall time `init` may take (it usually compiles rules, so it gets longer).
    pub init_timeout: Duration,
    /// Wall time the first call of a new instance may take, at least (it fills caches).
    pub warmup_timeout: Duration,
    /// The largest `.wasm` file read (plugins and kept blobs).
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(50),
            timeout_per_mib: Duration::from_millis(200),
            init_timeout: Duration::from_secs(2),
            warmup_timeout: Duration::from_millis(500),
            file_bytes: 64 << 20,
        }
    }
}

/// Why a plugin could not be loaded or started. Each says what is wrong in one line.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not a WebAssembly file (it does not start with the \\0asm magic number)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("a WebAssembly file of an encoding this host does not know")]
    UnknownEncoding,
    #[error(
        "a component, but not a factorio-isr plugin: it uses nothing of the {WIT_PACKAGE} package (build it with the factorio-isr SDK)"
    )]
    NotAPlugin,
    #[error("imports `{0}` without a usable version")]
    Unversioned(String),
    #[error(
        "built against {WIT_PACKAGE}@{built}, newer than this host supports (up to {supported}): upgrade factorio-isr to a release that supports {built}"
    )]
    TooNew { built: Version, supported: Version },
    #[error("built against {WIT_PACKAGE}@{0}, a version this host does not know")]
    UnknownVersion(Version),
    #[error(
        "a {WIT_PACKAGE} component that exports neither the parser world (init, parse) nor the monitor world (init, on-events, on-sample); it exports: {0}"
    )]
    UnknownWorld(String),
    #[error("is a {found} plugin, but a {wanted} plugin is needed here")]
    WrongWorld { found: WorldKind, wanted: WorldKind },
    #[error("does not compile: {0}")]
    Compile(String),
    #[error("does not instantiate in the sandbox: {0}")]
    Instantiate(String),
    #[error("init failed: {0}")]
    Init(String),
    #[error("init {0}")]
    InitFault(Fault),
    /// `init` faulted after printing (a Python traceback, a Rust panic message): its last
    /// words say why.
    #[error("init {fault}; the plugin said: {said}")]
    InitFaultSaying { fault: Fault, said: String },
}

/// The process's plugin engine: compiles and caches components and links them to the host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<SandboxState>,
    cache: ComponentCache,
    limits: Limits,
    /// Plugins loaded so far, by (content hash, name, stateless): loading the same plugin
    /// for another server gives the same [`Plugin`], so its code is in memory once.
    loaded: parking_lot::Mutex<
        std::collections::HashMap<(String, String, bool), std::sync::Weak<Plugin>>,
    >,
}

/// The engine every plugin runs on (and is compiled for, here or in a child process).
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if std::env::var_os("FACTORIO_ISR_PERFMAP").is_some() {
        // For developers: names plugin code in `perf` profiles (/tmp/perf-PID.map).
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// How often the deadline clock ticks; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

impl Runtime {
    /// A runtime with the given cache and limits; starts the deadline clock.
    pub fn new(cache: ComponentCache, limits: Limits) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config()).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-deadlines".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::parser::factorio_isr::plugin::host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // Plugins built against older versions import their version's `host`.
        bindings::v0_3::factorio_isr::plugin::host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::v0_2::factorio_isr::plugin::host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::v0_1::factorio_isr::plugin::host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Self {
            engine,
            linker,
            cache,
            limits,
            loaded: Default::default(),
        })
    }

    /// The limits every instance of this runtime gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The folder compiled plugins are cached in, if any.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.dir()
    }

    /// Checks, compiles (or loads from the cache) and identifies a plugin. `name` is what
    /// log lines and messages call it (a stock name or a file path).
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        self.load_as(name, wasm, false)
    }

    /// Loads a plugin known to keep no state between calls and to parse the same for every
    /// server (the stock plugins): its servers share idle instances instead of keeping one
    /// each, which is most of a server's memory.
    pub fn load_stateless(&self, name: &str, wasm: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        self.load_as(name, wasm, true)
    }

    fn load_as(
        &self,
        name: &str,
        wasm: &[u8],
        stateless: bool,
    ) -> Result<Arc<Plugin>, PluginError> {
        world::check_header(wasm)?;
        let hash = content_hash(wasm);
        let key = (hash.clone(), name.to_owned(), stateless);
        let mut loaded = self.loaded.lock();
        loaded.retain(|_, p| p.strong_count() > 0);
        if let Some(plugin) = loaded.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(plugin);
        }
        let (component, report) = self
            .cache
            .load(&self.engine, wasm, &hash)
            .map_err(|e| PluginError::Compile(one_line(&e)))?;
        let world = world::inspect(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Instantiate(one_line(&e)))?;
        let pre = match world.kind {
            WorldKind::Parser if world.version >= world::Version(0, 3, 0) => Pre::Parser(
                bindings::parser::ParserPre::new(pre)
                    .map_err(|e| PluginError::Instantiate(one_line(&e)))?,
            ),
            WorldKind::Parser => Pre::OldParser(
                bindings::v0_2::ParserPre::new(pre)
                    .map_err(|e| PluginError::Instantiate(one_line(&e)))?,
            ),
            WorldKind::Monitor => Pre::Monitor(
                bindings::monitor::MonitorPre::new(pre)
                    .map_err(|e| PluginError::Instantiate(one_line(&e)))?,
            ),
        };
        let plugin = Arc::new(Plugin {
            name: name.to_owned(),
            hash,
            world,
            cache: report,
            engine: self.engine.clone(),
            pre,
            limits: self.limits,
            idle: stateless.then(idle::IdleInstances::default),
            wasm: wasm.into(),
        });
        loaded.insert(key, Arc::downgrade(&plugin));
        Ok(plugin)
    }
}

enum Pre {
    Parser(bindings::parser::ParserPre<SandboxState>),
    /// A parser built against WIT 0.1.0 or 0.2.0: lines in a list, events written out.
    OldParser(bindings::v0_2::ParserPre<SandboxState>),
    Monitor(bindings::monitor::MonitorPre<SandboxState>),
}

/// A loaded plugin: compiled, identified, ready to instantiate for any number of servers.
pub struct Plugin {
    name: String,
    hash: String,
    world: WorldInfo,
    cache: LoadReport,
    engine: Engine,
    pre: Pre,
    limits: Limits,
    /// For a stateless plugin, instances not in a call, by configuration, for any server.
    idle: Option<idle::IdleInstances<instance::Live>>,
    /// The component as loaded, so a version can be kept on disk (see `reload::PinStore`).
    wasm: Arc<[u8]>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// For a stateless plugin, how many instances wait between calls (all servers, all
    /// configurations); always 0 for others.
    pub fn idle_instances(&self) -> usize {
        self.idle.as_ref().map_or(0, idle::IdleInstances::len)
    }

    /// For a stateless plugin, how many configurations its idle instances are kept for
    /// (those some server still runs); always 0 for others.
    pub fn idle_configurations(&self) -> usize {
        self.idle
            .as_ref()
            .map_or(0, idle::IdleInstances::configurations)
    }

    /// The component's bytes, as loaded.
    pub fn wasm(&self) -> &[u8] {
        &self.wasm
    }

    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the `.wasm`, in hex: the identity of this version of the plugin.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The first 12 hex digits of [`Plugin::hash`], for people.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }

    /// Which world and WIT version it was built for.
    pub fn world(&self) -> WorldInfo {
        self.world
    }

    /// Whether loading it compiled anything.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache.outcome
    }

    /// What loading it cost (compiled or read from the cache, how long, how large).
    pub fn load_report(&self) -> LoadReport {
        self.cache
    }

    /// A parser instance for `server`, initialised with `config` (JSON).
    pub fn parser(
        self: &Arc<Self>,
        server: &str,
        config: &str,
    ) -> Result<ParserInstance, PluginError> {
        match &self.pre {
            Pre::Parser(_) | Pre::OldParser(_) => {
                Instance::start(self.clone(), server, config).map(Into::into)
            }
            Pre::Monitor(_) => Err(PluginError::WrongWorld {
                found: WorldKind::Monitor,
                wanted: WorldKind::Parser,
            }),
        }
    }

    /// A monitor instance for `server`, initialised with `config` (JSON).
    pub fn monitor(
        self: &Arc<Self>,
        server: &str,
        config: &str,
    ) -> Result<MonitorInstance, PluginError> {
        match &self.pre {
            Pre::Monitor(_) => Instance::start(self.clone(), server, config).map(Into::into),
            Pre::Parser(_) | Pre::OldParser(_) => Err(PluginError::WrongWorld {
                found: WorldKind::Parser,
                wanted: WorldKind::Monitor,
            }),
        }
    }
}

/// A plugin's identity: the SHA-256 of its `.wasm`, in hex ([`Plugin::hash`]).
pub fn content_hash(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// The identity of a server's monitors: 12 hex digits of a SHA-256 over each one's content
/// hash and configuration.
pub fn monitors_version(monitors: &[MonitorInstance]) -> String {
    let mut h = Sha256::new();
    for m in monitors {
        h.update(m.plugin().hash().as_bytes());
        h.update([0]);
        h.update(m.config().as_bytes());
        h.update([0]);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An error chain on one line, without wasm backtraces.
fn one_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_owned()
}
