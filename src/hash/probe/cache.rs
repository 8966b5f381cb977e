//! Measured rates kept between runs, so `auto` measures once per device, driver and release.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Rates;

/// The file under the cache directory.
const FILE_NAME: &str = "rates.json";

/// What a measurement holds for: a new driver, a new peerhash or (for the CPU) a different
/// thread count or search path measures again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheKey {
    /// `gpu` or `cpu`.
    pub device: String,
    /// The adapter name (`cpu` for the CPU).
    pub name: String,
    /// The wgpu backend API (`vulkan`, `metal` ...; `rayon` for the CPU).
    pub api: String,
    pub driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// [`crate::hash::cpu::sha256d::implementation`], for the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256d_search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha_ni: Option<bool>,
    pub peerhash: String,
}

impl CacheKey {
    /// The key of a GPU adapter, from what `devices` shows of it.
    #[must_use]
    pub fn gpu(name: &str, api: &str, driver: &str) -> Self {
        Self {
            device: "gpu".to_owned(),
            name: name.to_owned(),
            api: api.to_owned(),
            driver: driver.to_owned(),
            threads: None,
            sha256d_search: None,
            sha_ni: None,
            peerhash: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The key of the CPU backend with `threads` workers on this machine.
    #[must_use]
    pub fn cpu(threads: usize) -> Self {
        Self {
            device: "cpu".to_owned(),
            name: "cpu".to_owned(),
            api: "rayon".to_owned(),
            driver: String::new(),
            threads: Some(threads),
            sha256d_search: Some(crate::hash::cpu::sha256d::implementation().to_owned()),
            sha_ni: Some(crate::hash::cpu::has_sha_ni()),
            peerhash: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Whether both keys name the same device, whatever its driver or release: a new
    /// measurement replaces the old one instead of piling up beside it.
    fn same_device(&self, other: &Self) -> bool {
        self.device == other.device && self.name == other.name && self.api == other.api
    }
}

/// One device's measurement as the cache keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    pub key: CacheKey,
    pub rates: Rates,
    /// Why the probe failed, when it did: a failed GPU stays failed until `devices --probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The cache file's contents.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateCache {
    pub entries: Vec<CacheEntry>,
}

/// `$XDG_CACHE_HOME/peerhash`, else `$HOME/.cache/peerhash`; `None` without either (the probe
/// then runs every time and nothing is written). A relative `XDG_CACHE_HOME` is ignored, as
/// the XDG spec says.
#[must_use]
pub fn cache_dir(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    xdg_cache_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".cache")))
        .map(|dir| dir.join("peerhash"))
}

/// The cache file for this user, from the environment.
#[must_use]
pub fn cache_file() -> Option<PathBuf> {
    cache_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
        .map(|dir| dir.join(FILE_NAME))
}

impl RateCache {
    /// The cache at `path`; missing, unreadable or corrupt is an empty cache (logged at debug),
    /// never an error: the probe just runs again and rewrites it.
    #[must_use]
    pub fn load(path: &Path) -> Self {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::debug!("ignoring the rate cache {}: {e}", path.display());
                return Self::default();
            }
        };
        serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::debug!("ignoring the corrupt rate cache {}: {e}", path.display());
            Self::default()
        })
    }

    /// The entry measured under exactly `key`.
    #[must_use]
    pub fn get(&self, key: &CacheKey) -> Option<&CacheEntry> {
        self.entries.iter().find(|e| e.key == *key)
    }

    /// Records a measurement, replacing any earlier one of the same device.
    pub fn insert(&mut self, entry: CacheEntry) {
        self.entries.retain(|e| !e.key.same_device(&entry.key));
        self.entries.push(entry);
    }

    /// Writes the cache to `path` through a temporary file and a rename, so a concurrent run
    /// reads the old file or the new one, never half of one.
    ///
    /// # Errors
    /// The directory or file cannot be written (callers log it and go on).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: CacheKey, nonce_search: f64) -> CacheEntry {
        CacheEntry {
            key,
            rates: Rates {
                nonce_search: Some(nonce_search),
                bulk_sha1: Some(1.5e9),
                bulk_sha256: None,
            },
            error: None,
        }
    }

    #[test]
    fn a_saved_cache_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerhash").join(FILE_NAME);
        let mut cache = RateCache::default();
        cache.insert(entry(CacheKey::cpu(2), 17e6));
        let mut failed = entry(CacheKey::gpu("llvmpipe", "vulkan", "Mesa 22.3.6"), 0.0);
        failed.rates = Rates::default();
        failed.error = Some("GPU error on llvmpipe: cannot open device".to_owned());
        cache.insert(failed);
        cache.save(&path).unwrap();
        assert_eq!(RateCache::load(&path), cache);
        assert!(
            std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .all(|e| e.unwrap().file_name() == FILE_NAME),
            "no temporary file is left behind"
        );
    }

    #[test]
    fn a_different_driver_release_or_thread_count_misses() {
        let mut cache = RateCache::default();
        let gpu = CacheKey::gpu("Radeon 780M", "vulkan", "radv Mesa 24.0");
        cache.insert(entry(gpu.clone(), 300e6));
        cache.insert(entry(CacheKey::cpu(16), 90e6));
        assert!(cache.get(&gpu).is_some());
        assert!(cache.get(&CacheKey::cpu(16)).is_some());
        let new_driver = CacheKey::gpu("Radeon 780M", "vulkan", "radv Mesa 24.1");
        assert!(cache.get(&new_driver).is_none());
        let new_release = CacheKey {
            peerhash: "0.0.0-other".to_owned(),
            ..gpu.clone()
        };
        assert!(cache.get(&new_release).is_none());
        assert!(cache.get(&CacheKey::cpu(8)).is_none());
        // The new measurement replaces the stale one of the same device.
        cache.insert(entry(new_driver.clone(), 310e6));
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.get(&gpu).is_none());
        assert!(cache.get(&new_driver).is_some());
    }

    #[test]
    fn a_corrupt_or_unreadable_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for junk in [&b"{\"entries\": [{\"key\": 3"[..], b"\xff\xfe", b"[]", b""] {
            std::fs::write(&path, junk).unwrap();
            assert_eq!(RateCache::load(&path), RateCache::default());
        }
        // A directory where the file should be cannot be read, nor written over.
        assert_eq!(RateCache::load(dir.path()), RateCache::default());
        assert_eq!(
            RateCache::load(&dir.path().join("none")),
            RateCache::default()
        );
        // A corrupt file is simply replaced by the next save.
        std::fs::write(&path, b"not json").unwrap();
        let mut cache = RateCache::default();
        cache.insert(entry(CacheKey::cpu(2), 17e6));
        cache.save(&path).unwrap();
        assert_eq!(RateCache::load(&path), cache);
    }

    #[test]
    fn the_directory_follows_xdg_then_home() {
        let dir = |xdg: Option<&str>, home: Option<&str>| {
            cache_dir(xdg.map(Into::into), home.map(Into::into))
        };
        assert_eq!(
            dir(Some("/x/cache"), Some("/home/u")),
            Some(PathBuf::from("/x/cache/peerhash"))
        );
        assert_eq!(
            dir(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/peerhash"))
        );
        assert_eq!(
            dir(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/peerhash"))
        );
        assert_eq!(
            dir(Some(""), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/peerhash"))
        );
        assert_eq!(dir(None, None), None);
    }
}
