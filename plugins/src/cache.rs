//! Compiled plugins on disk, so a worker compiles a module once across restarts.
//!
//! A file is named by the module's SHA-256 and a digest of the engine's configuration and
//! wasmtime version (`Engine::precompile_compatibility_hash`), so a change of either is a
//! miss, never a wrong load. Its first 32 bytes are the SHA-256 of the rest, checked before
//! the rest is handed to wasmtime.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached module, if there is an intact one.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Module> {
        let path = self.path(sha256);
        let file = std::fs::read(&path).ok()?;
        let (digest, artifact) = file.split_at_checked(32)?;
        if Sha256::digest(artifact).as_slice() != digest {
            tracing::warn!(
                "plugin cache file {} is damaged; recompiling",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: `artifact` is what `Module::serialize` wrote for this engine configuration
        // (the file name carries its compatibility hash, and wasmtime checks it again), in a
        // folder only this service writes, and its digest was checked just above, so these
        // are bytes wasmtime itself produced, as `Module::deserialize` requires.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(engine, artifact) };
        match module {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(
                    "plugin cache file {} is unusable ({e}); recompiling",
                    path.display()
                );
                None
            }
        }
    }

    /// Writes `module` for the next start; a failure only costs a compilation later.
    pub(crate) fn store(&self, sha256: &str, module: &Module) {
        let written = module
            .serialize()
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|artifact| {
                let path = self.path(sha256);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut file = Sha256::digest(&artifact).to_vec();
                file.extend_from_slice(&artifact);
                std::fs::write(&tmp, file)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = written {
            tracing::warn!("cannot cache compiled plugin {sha256}: {e}");
        }
    }
}
