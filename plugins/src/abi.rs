//! Version 1 of the plugin contract, as the host checks it. The same contract for plugin
//! authors is `plugins/include/unmark_plugin.h` and `plugins/ABI.md`.
//!
//! A plugin is a core WebAssembly module. It exports its `memory`, `unmark_abi_version`,
//! `unmark_alloc` and one entry point: `unmark_filter` (a filter) or `unmark_mask` (a mask
//! detector). It may import three host functions from the module `unmark` and nothing else.

use serde::{Deserialize, Serialize};
use wasmtime::{ExternType, FuncType, Module, ValType};

use crate::PluginError;

/// The contract version this host speaks.
pub const ABI_VERSION: i32 = 1;

/// Import module of the host functions.
pub const IMPORT_MODULE: &str = "unmark";

/// What a plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// RGBA image (+ optional mask) + params -> RGBA image of the same size.
    Filter,
    /// RGBA image + params -> 8-bit mask of the same size (non-zero = watermark).
    Mask,
}

impl Kind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Mask => "mask",
        }
    }

    /// The export that runs the plugin.
    pub(crate) fn entry(self) -> &'static str {
        match self {
            Self::Filter => "unmark_filter",
            Self::Mask => "unmark_mask",
        }
    }

    /// Bytes of output for a `width` x `height` image.
    pub(crate) fn output_len(self, width: u32, height: u32) -> u64 {
        let pixels = u64::from(width) * u64::from(height);
        match self {
            Self::Filter => pixels * 4,
            Self::Mask => pixels,
        }
    }

    fn params(self) -> &'static [ValType] {
        match self {
            // rgba, width, height, mask (0 = none), params, params_len
            Self::Filter => &[I32, I32, I32, I32, I32, I32],
            // rgba, width, height, params, params_len
            Self::Mask => &[I32, I32, I32, I32, I32],
        }
    }
}

const I32: ValType = ValType::I32;
const F64: ValType = ValType::F64;

/// The host functions a plugin may import, with their types.
pub(crate) const IMPORTS: [(&str, &[ValType], &[ValType]); 3] = [
    // output(ptr, len): hands the result to the host, which copies it at once.
    ("output", &[I32, I32], &[]),
    // param(name_ptr, name_len, fallback) -> value: a numeric parameter.
    ("param", &[I32, I32, F64], &[F64]),
    // log(ptr, len): a line of text kept with the job's error, if it fails.
    ("log", &[I32, I32], &[]),
];

/// The exports every plugin has besides its entry point.
const COMMON_EXPORTS: [(&str, &[ValType], &[ValType]); 2] = [
    ("unmark_abi_version", &[], &[I32]),
    ("unmark_alloc", &[I32], &[I32]),
];

/// Optional export: a WASI-style reactor initialiser, called once after instantiation.
pub(crate) const INITIALIZE: &str = "_initialize";

fn same(actual: impl ExactSizeIterator<Item = ValType>, expected: &[ValType]) -> bool {
    actual.len() == expected.len() && actual.zip(expected).all(|(a, e)| ValType::eq(&a, e))
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn matches(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    same(ty.params(), params) && same(ty.results(), results)
}

/// Checks a compiled module against the contract and says what kind of plugin it is.
pub(crate) fn check(module: &Module) -> Result<Kind, PluginError> {
    for import in module.imports() {
        let allowed = IMPORTS
            .iter()
            .find(|(name, _, _)| import.module() == IMPORT_MODULE && import.name() == *name);
        let Some((name, params, results)) = allowed else {
            return Err(PluginError::ForbiddenImport(format!(
                "{}.{}",
                import.module(),
                import.name()
            )));
        };
        match import.ty() {
            ExternType::Func(ty) if matches(&ty, params, results) => {}
            _ => {
                return Err(PluginError::Contract(format!(
                    "import unmark.{name} must be a function {}",
                    signature(params, results)
                )));
            }
        }
    }
    let export = |name: &str| module.exports().find(|e| e.name() == name).map(|e| e.ty());
    match export("memory") {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(_) => {
            return Err(PluginError::Contract(
                "export memory must be a 32-bit, unshared linear memory".into(),
            ));
        }
        None => {
            return Err(PluginError::Contract(
                "the module does not export memory".into(),
            ));
        }
    }
    let func = |name: &str, params: &[ValType], results: &[ValType]| match export(name) {
        Some(ExternType::Func(ty)) if matches(&ty, params, results) => Ok(true),
        Some(_) => Err(PluginError::Contract(format!(
            "export {name} must be a function {}",
            signature(params, results)
        ))),
        None => Ok(false),
    };
    for (name, params, results) in COMMON_EXPORTS {
        if !func(name, params, results)? {
            return Err(PluginError::Contract(format!(
                "the module does not export {name}"
            )));
        }
    }
    if export(INITIALIZE).is_some() && !func(INITIALIZE, &[], &[])? {
        return Err(PluginError::Contract(format!(
            "export {INITIALIZE} must be a function () -> ()"
        )));
    }
    let filter = func(Kind::Filter.entry(), Kind::Filter.params(), &[I32])?;
    let mask = func(Kind::Mask.entry(), Kind::Mask.params(), &[I32])?;
    match (filter, mask) {
        (true, false) => Ok(Kind::Filter),
        (false, true) => Ok(Kind::Mask),
        (true, true) => Err(PluginError::Contract(
            "the module exports both unmark_filter and unmark_mask; a plugin is one kind".into(),
        )),
        (false, false) => Err(PluginError::Contract(
            "the module exports neither unmark_filter nor unmark_mask".into(),
        )),
    }
}
