//! Telling what a `.wasm` file is before running it: a component at all, which world of
//! the `factorio-isr:plugin` package it targets, and against which WIT version.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "factorio-isr:plugin";

/// The WIT versions this host loads, oldest first. The last is the one it builds with.
pub const SUPPORTED_WIT_VERSIONS: &[Version] = &[
    Version(0, 1, 0),
    Version(0, 2, 0),
    Version(0, 3, 0),
    Version(0, 4, 0),
];

/// A WIT package version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
        let v = Version(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }

    /// The newest version this host knows.
    pub fn newest_supported() -> Self {
        SUPPORTED_WIT_VERSIONS[SUPPORTED_WIT_VERSIONS.len() - 1]
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    Parser,
    Monitor,
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Parser => "parser",
            Self::Monitor => "monitor",
        })
    }
}

/// What a component is, as far as the host is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldInfo {
    pub kind: WorldKind,
    pub version: Version,
}

impl fmt::Display for WorldInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{WIT_PACKAGE}/{}@{}", self.kind, self.version)
    }
}

/// Rejects bytes that are not a WebAssembly component, with a message that says what they are.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PluginError::NotWasm);
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(PluginError::CoreModule),
        _ => Err(PluginError::UnknownEncoding),
    }
}

/// Reads the world and WIT version from a compiled component's imports and exports.
pub(crate) fn inspect(engine: &Engine, component: &Component) -> Result<WorldInfo, PluginError> {
    let ty = component.component_type();
    let mut version = None;
    for (name, _) in ty.imports(engine) {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some((_, v)) = rest.split_once('@') else {
            return Err(PluginError::Unversioned(name.to_owned()));
        };
        let v = Version::parse(v).ok_or_else(|| PluginError::Unversioned(name.to_owned()))?;
        version = Some(version.map_or(v, |old: Version| old.max(v)));
    }
    let Some(version) = version else {
        return Err(PluginError::NotAPlugin);
    };
    if version > Version::newest_supported() {
        return Err(PluginError::TooNew {
            built: version,
            supported: Version::newest_supported(),
        });
    }
    if !SUPPORTED_WIT_VERSIONS.contains(&version) {
        return Err(PluginError::UnknownVersion(version));
    }

    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let has = |n: &str| exports.iter().any(|e| e == n);
    let kind = if has("init") && has("parse") {
        WorldKind::Parser
    } else if has("init") && has("on-events") && has("on-sample") {
        WorldKind::Monitor
    } else {
        return Err(PluginError::UnknownWorld(exports.join(", ")));
    };
    Ok(WorldInfo { kind, version })
}
