//! The wasmtime host: compiles plugins once, runs each call in a fresh `Store` with a memory
//! cap, a CPU deadline and a stack limit, and trusts nothing the guest hands back.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, InstancePre, Linker, Memory, Module, OptLevel, ResourceLimiter, Store,
    Trap,
};

use crate::abi::{self, Kind};
use crate::cache::DiskCache;
use crate::{PluginError, describe_duration};

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);
/// Most bytes of guest log kept per call.
const MAX_LOG: usize = 4096;
/// Longest parameter name a guest may ask for.
const MAX_PARAM_NAME: usize = 256;
/// Compiled plugins kept in memory.
const MAX_COMPILED: usize = 256;

/// The sandbox's limits; every one is configurable (`[plugins]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest linear memory a call may grow to, in bytes.
    pub memory_bytes: u64,
    /// CPU budget of a call: this much, plus `cpu_per_megapixel` for each megapixel.
    pub cpu_base: Duration,
    /// CPU budget per megapixel of input.
    pub cpu_per_megapixel: Duration,
    /// Most native stack the guest's calls may use, in bytes.
    pub stack_bytes: usize,
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            cpu_base: Duration::from_secs(2),
            cpu_per_megapixel: Duration::from_secs(2),
            stack_bytes: 512 << 10,
            max_module_bytes: 8 << 20,
        }
    }
}

impl Limits {
    /// The CPU budget of a call on a `width` x `height` image.
    pub fn cpu_budget(&self, width: u32, height: u32) -> Duration {
        let megapixels = f64::from(width) * f64::from(height) / 1e6;
        self.cpu_base + self.cpu_per_megapixel.mul_f64(megapixels)
    }
}

/// A plugin compiled and linked, ready to instantiate.
pub struct Compiled {
    pre: InstancePre<State>,
    /// Filter or mask detector.
    pub kind: Kind,
    /// SHA-256 of the module's bytes, in hex.
    pub sha256: String,
}

/// What upload validation found out about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Filter or mask detector.
    pub kind: Kind,
    /// SHA-256 of the module's bytes, in hex.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: usize,
}

/// One call: an RGBA image, an optional mask and the step's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Pixels, 4 bytes each, rows top to bottom.
    pub rgba: &'a [u8],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// One byte per pixel (non-zero = masked), for filters; mask detectors get none.
    pub mask: Option<&'a [u8]>,
    /// The step's parameters, a JSON object.
    pub params: &'a serde_json::Value,
}

/// Per-call state of a `Store`.
struct State {
    limiter: Limiter,
    params: serde_json::Map<String, serde_json::Value>,
    expected_output: u64,
    output: Option<Vec<u8>>,
    log: String,
}

struct Limiter {
    memory_bytes: u64,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            return Err(wasmtime::Error::new(PluginError::Memory {
                limit_mib: self.memory_bytes >> 20,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Stops the deadline clock when the sandbox goes.
struct Ticker(Arc<AtomicBool>);

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("plugin-clock".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the plugin clock: {e}"));
        Self(stop)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The plugin host. One per process; cheap to share (`Arc`), safe to call from many threads.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    disk: Option<DiskCache>,
    _clock: Ticker,
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The guest memory range `ptr..ptr+len`, if it lies inside `size` bytes.
fn guest_range(size: usize, ptr: i32, len: u64, call: &str) -> Result<Range<usize>, PluginError> {
    let start = u64::from(ptr as u32);
    let end = start.saturating_add(len);
    if end > size as u64 {
        return Err(PluginError::OutOfBounds {
            call: call.to_owned(),
            ptr: start,
            len,
            memory: size as u64,
        });
    }
    Ok(start as usize..end as usize)
}

fn guest_memory(caller: &mut Caller<'_, State>) -> Result<Memory, PluginError> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| PluginError::Contract("the module does not export memory".into()))
}

/// Copies `len` guest bytes at `ptr`, checked against the memory's current size.
fn read_guest(
    caller: &mut Caller<'_, State>,
    ptr: i32,
    len: i32,
    call: &str,
) -> Result<Vec<u8>, PluginError> {
    let memory = guest_memory(caller)?;
    let data = memory.data(&*caller);
    let range = guest_range(data.len(), ptr, u64::from(len as u32), call)?;
    Ok(data[range].to_vec())
}

fn host_output(caller: &mut Caller<'_, State>, ptr: i32, len: i32) -> Result<(), PluginError> {
    let expected = caller.data().expected_output;
    if u64::from(len as u32) != expected {
        return Err(PluginError::OutputSize {
            got: u64::from(len as u32),
            expected,
        });
    }
    if caller.data().output.is_some() {
        return Err(PluginError::Contract("called unmark.output twice".into()));
    }
    let bytes = read_guest(caller, ptr, len, "unmark.output")?;
    caller.data_mut().output = Some(bytes);
    Ok(())
}

fn host_param(
    caller: &mut Caller<'_, State>,
    ptr: i32,
    len: i32,
    fallback: f64,
) -> Result<f64, PluginError> {
    if len as u32 as usize > MAX_PARAM_NAME {
        return Err(PluginError::Contract(format!(
            "unmark.param name is {} bytes; at most {MAX_PARAM_NAME}",
            len as u32
        )));
    }
    let raw = read_guest(caller, ptr, len, "unmark.param")?;
    let name = String::from_utf8(raw)
        .map_err(|_| PluginError::Contract("unmark.param name is not UTF-8".into()))?;
    match caller.data().params.get(&name) {
        None | Some(serde_json::Value::Null) => Ok(fallback),
        Some(serde_json::Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(|| PluginError::Param {
            name: name.clone(),
            message: "is not a finite number".into(),
        }),
        Some(other) => Err(PluginError::Param {
            name,
            message: format!("must be a number, got {other}"),
        }),
    }
}

fn host_log(caller: &mut Caller<'_, State>, ptr: i32, len: i32) -> Result<(), PluginError> {
    let room = MAX_LOG.saturating_sub(caller.data().log.len());
    let keep = (len as u32 as usize).min(room);
    let bytes = read_guest(caller, ptr, keep as i32, "unmark.log")?;
    let log = &mut caller.data_mut().log;
    if !log.is_empty() && keep > 0 {
        log.push_str("; ");
    }
    log.push_str(String::from_utf8_lossy(&bytes).trim());
    Ok(())
}

fn to_trap(e: PluginError) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

fn link(engine: &Engine) -> Result<Linker<State>, PluginError> {
    let mut linker = Linker::new(engine);
    let module = abi::IMPORT_MODULE;
    let wired = linker
        .func_wrap(
            module,
            "output",
            |mut c: Caller<'_, State>, ptr: i32, len: i32| {
                host_output(&mut c, ptr, len).map_err(to_trap)
            },
        )
        .and_then(|l| {
            l.func_wrap(
                module,
                "param",
                |mut c: Caller<'_, State>, ptr: i32, len: i32, fallback: f64| {
                    host_param(&mut c, ptr, len, fallback).map_err(to_trap)
                },
            )
        })
        .and_then(|l| {
            l.func_wrap(
                module,
                "log",
                |mut c: Caller<'_, State>, ptr: i32, len: i32| {
                    host_log(&mut c, ptr, len).map_err(to_trap)
                },
            )
        });
    wired.map_err(|e| PluginError::Host(format!("cannot link the host functions: {e}")))?;
    Ok(linker)
}

impl Sandbox {
    /// A host with `limits`, keeping compiled modules under `cache_dir` when one is given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config)
            .map_err(|e| PluginError::Host(format!("cannot start wasmtime: {e}")))?;
        let disk = cache_dir.and_then(|dir| match DiskCache::open(dir.clone(), &engine) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(
                    "plugin cache {} is unusable, compiling in memory: {e}",
                    dir.display()
                );
                None
            }
        });
        Ok(Self {
            linker: link(&engine)?,
            _clock: Ticker::start(engine.clone()),
            engine,
            limits,
            compiled: Mutex::new(HashMap::new()),
            disk,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Upload validation: size, a valid module, the contract's imports and exports, and the
    /// ABI version the module reports (called in the sandbox). Compiles and caches it.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, PluginError> {
        if bytes.len() > self.limits.max_module_bytes {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_module_bytes,
            });
        }
        let sha256 = sha256_hex(bytes);
        let compiled = self.load(&sha256, bytes)?;
        let budget = self.limits.cpu_base;
        let mut store = self.store(0, budget);
        let version = (|| {
            let instance = compiled.pre.instantiate(&mut store)?;
            let version = instance.get_typed_func::<(), i32>(&mut store, "unmark_abi_version")?;
            version.call(&mut store, ())
        })()
        .map_err(|e| classify(e, budget))?;
        if version != abi::ABI_VERSION {
            return Err(PluginError::Contract(format!(
                "unmark_abi_version returned {version}; this host speaks version {}",
                abi::ABI_VERSION
            )));
        }
        Ok(Inspection {
            kind: compiled.kind,
            sha256,
            size: bytes.len(),
        })
    }

    /// The compiled plugin of these bytes: from memory, from the disk cache, or compiled now.
    /// `sha256` must be the bytes' digest (it is checked).
    pub fn load(&self, sha256: &str, bytes: &[u8]) -> Result<Arc<Compiled>, PluginError> {
        if let Some(hit) = self.cached(sha256) {
            return Ok(hit);
        }
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(PluginError::Contract(format!(
                "the module's SHA-256 is {actual}, expected {sha256}"
            )));
        }
        let module = match self
            .disk
            .as_ref()
            .and_then(|d| d.load(&self.engine, sha256))
        {
            Some(module) => module,
            None => {
                let module = Module::new(&self.engine, bytes)
                    .map_err(|e| PluginError::Invalid(format!("{e}")))?;
                if let Some(disk) = &self.disk {
                    disk.store(sha256, &module);
                }
                module
            }
        };
        let kind = abi::check(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::Contract(format!("{e}")))?;
        let compiled = Arc::new(Compiled {
            pre,
            kind,
            sha256: sha256.to_owned(),
        });
        let mut map = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_COMPILED {
            map.clear();
        }
        map.insert(sha256.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// The compiled plugin with this digest, if this process has it.
    pub fn cached(&self, sha256: &str) -> Option<Arc<Compiled>> {
        let map = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(sha256).cloned()
    }

    fn store(&self, expected_output: u64, budget: Duration) -> Store<State> {
        let state = State {
            limiter: Limiter {
                memory_bytes: self.limits.memory_bytes,
            },
            params: serde_json::Map::new(),
            expected_output,
            output: None,
            log: String::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(budget.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1);
        store.epoch_deadline_trap();
        store
    }

    /// Runs one call in a fresh instance and returns what the plugin handed to
    /// `unmark.output`: `width * height * 4` bytes for a filter, `width * height` for a mask.
    pub fn run(&self, plugin: &Compiled, input: &Input<'_>) -> Result<Vec<u8>, PluginError> {
        let (w, h) = (input.width, input.height);
        let pixels = u64::from(w) * u64::from(h);
        if input.rgba.len() as u64 != pixels * 4
            || input.mask.is_some_and(|m| m.len() as u64 != pixels)
        {
            return Err(PluginError::Host(format!(
                "input buffers do not match {w}x{h} pixels"
            )));
        }
        let budget = self.limits.cpu_budget(w, h);
        let mut store = self.store(plugin.kind.output_len(w, h), budget);
        store.data_mut().params = match input.params {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let params = serde_json::to_vec(input.params).unwrap_or_default();
        let code = call(plugin, &mut store, input, &params).map_err(|e| classify(e, budget))?;
        let state = store.into_data();
        if code != 0 {
            return Err(PluginError::Guest {
                code,
                log: state.log,
            });
        }
        state.output.ok_or(PluginError::NoOutput)
    }
}

/// Instantiates, copies the inputs in through the guest's allocator, and calls the entry.
fn call(
    plugin: &Compiled,
    store: &mut Store<State>,
    input: &Input<'_>,
    params: &[u8],
) -> wasmtime::Result<i32> {
    let instance = plugin.pre.instantiate(&mut *store)?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, abi::INITIALIZE) {
        init.call(&mut *store, ())?;
    }
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| to_trap(PluginError::Contract("no memory export".into())))?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "unmark_alloc")?;
    let copy_in = |store: &mut Store<State>, bytes: &[u8]| -> wasmtime::Result<i32> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| to_trap(PluginError::Host("input over 2 GiB".into())))?;
        let ptr = alloc.call(&mut *store, len)?;
        if ptr == 0 && len > 0 {
            return Err(to_trap(PluginError::Contract(format!(
                "unmark_alloc returned NULL for {len} bytes"
            ))));
        }
        let range = guest_range(memory.data_size(&*store), ptr, len as u64, "unmark_alloc")
            .map_err(to_trap)?;
        memory.data_mut(&mut *store)[range].copy_from_slice(bytes);
        Ok(ptr)
    };
    let rgba = copy_in(store, input.rgba)?;
    let params_ptr = copy_in(store, params)?;
    let (w, h) = (input.width as i32, input.height as i32);
    let params_len = params.len() as i32;
    match plugin.kind {
        Kind::Filter => {
            let mask = match input.mask {
                Some(mask) => copy_in(store, mask)?,
                None => 0,
            };
            let entry = instance.get_typed_func::<(i32, i32, i32, i32, i32, i32), i32>(
                &mut *store,
                Kind::Filter.entry(),
            )?;
            entry.call(&mut *store, (rgba, w, h, mask, params_ptr, params_len))
        }
        Kind::Mask => {
            let entry = instance.get_typed_func::<(i32, i32, i32, i32, i32), i32>(
                &mut *store,
                Kind::Mask.entry(),
            )?;
            entry.call(&mut *store, (rgba, w, h, params_ptr, params_len))
        }
    }
}

/// Turns whatever stopped a call into the typed error the job reports.
fn classify(e: wasmtime::Error, budget: Duration) -> PluginError {
    if let Some(p) = e.downcast_ref::<PluginError>() {
        return p.clone();
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::CpuBudget(describe_duration(budget)),
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{e}")),
    }
}
