//! unmark's weight files: named `f32` tensors behind a JSON header.
//!
//! ```text
//! b"UNMARKW1"  u32 LE header length  header (JSON)  tensor data (f32 LE, in header order)
//! ```
//!
//! The header names the model, where the weights came from (file name and SHA-256), and each
//! tensor's name and shape. Loading checks the magic, the header, and that the data is
//! exactly as long as the shapes say, so a truncated or foreign file is named, never guessed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ModelError;

const MAGIC: &[u8; 8] = b"UNMARKW1";

/// The header of a weight file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Model name, for example `isnet`.
    pub model: String,
    /// What the weights were imported from (file name).
    pub source: String,
    /// SHA-256 of the imported file, hex.
    pub source_sha256: String,
    /// Tensors, in data order.
    pub tensors: Vec<TensorEntry>,
}

/// One tensor's name and shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// Dotted name, for example `stage1.rebnconvin.weight`.
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

/// A tensor's shape and values.
type Stored = (Vec<usize>, Vec<f32>);

/// A model's weights, by name. Loading a network takes each tensor once and checks its shape.
#[derive(Debug)]
pub struct Weights {
    /// Header of the file the weights came from.
    pub header: Header,
    tensors: RefCell<BTreeMap<String, Stored>>,
}

impl Weights {
    /// Weights from tensors in memory (the order of `tensors` is the file order).
    pub fn new(
        model: &str,
        source: &str,
        source_sha256: &str,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Self {
        let header = Header {
            model: model.into(),
            source: source.into(),
            source_sha256: source_sha256.into(),
            tensors: tensors
                .iter()
                .map(|(name, shape, _)| TensorEntry {
                    name: name.clone(),
                    shape: shape.clone(),
                })
                .collect(),
        };
        let map = tensors
            .into_iter()
            .map(|(name, shape, data)| (name, (shape, data)))
            .collect();
        Self {
            header,
            tensors: RefCell::new(map),
        }
    }

    /// Takes the tensor `name`, which must have `shape`.
    pub fn take(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let model = &self.header.model;
        let (found, data) = self.tensors.borrow_mut().remove(name).ok_or_else(|| {
            ModelError::Layout(format!("{model} weights have no tensor {name:?}"))
        })?;
        if found != shape {
            return Err(ModelError::Layout(format!(
                "{model} tensor {name:?} is {found:?} but the network needs {shape:?}"
            )));
        }
        Ok(data)
    }

    /// Fails if any tensor was never taken (the file is for another network).
    pub fn check_all_used(&self) -> Result<(), ModelError> {
        let left = self.tensors.borrow();
        match left.keys().next() {
            None => Ok(()),
            Some(name) => Err(ModelError::Layout(format!(
                "{} weights have {} tensor(s) the network does not use, first {name:?}",
                self.header.model,
                left.len()
            ))),
        }
    }

    /// Writes the weights (all of them, taken or not) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| ModelError::Io(format!("encoding the header: {e}")))?;
        let io = |e: std::io::Error| ModelError::Io(format!("writing {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        let len =
            u32::try_from(header.len()).map_err(|_| ModelError::Io("header too big".into()))?;
        out.write_all(&len.to_le_bytes()).map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let tensors = self.tensors.borrow();
        for entry in &self.header.tensors {
            let (_, data) = tensors.get(&entry.name).ok_or_else(|| {
                ModelError::Io(format!("tensor {:?} was taken before saving", entry.name))
            })?;
            for v in data {
                out.write_all(&v.to_le_bytes()).map_err(io)?;
            }
        }
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a weight file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError::Io(format!("reading weights {}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            ModelError::Format(m) => ModelError::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses a weight file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let format = |m: String| ModelError::Format(m);
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(format(
                "not an unmark weight file (no UNMARKW1 magic); import a model with \
                 `unmark models import`"
                    .into(),
            ));
        }
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let header_end = 12 + len;
        let header: Header = serde_json::from_slice(
            bytes
                .get(12..header_end)
                .ok_or_else(|| format(format!("header of {len} bytes is cut short")))?,
        )
        .map_err(|e| format(format!("bad header: {e}")))?;
        let mut offset = header_end;
        let mut tensors = Vec::with_capacity(header.tensors.len());
        for entry in &header.tensors {
            let count: usize = entry.shape.iter().product();
            let end = offset + count * 4;
            let data = bytes.get(offset..end).ok_or_else(|| {
                format(format!(
                    "truncated: tensor {:?} {:?} needs bytes {offset}..{end}, the file has {}",
                    entry.name,
                    entry.shape,
                    bytes.len()
                ))
            })?;
            let values = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push((entry.name.clone(), entry.shape.clone(), values));
            offset = end;
        }
        if offset != bytes.len() {
            return Err(format(format!(
                "{} bytes after the last tensor (a damaged file?)",
                bytes.len() - offset
            )));
        }
        Ok(Self::new(
            &header.model,
            &header.source,
            &header.source_sha256,
            tensors,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Weights {
        Weights::new(
            "toy",
            "toy.onnx",
            "00",
            vec![
                ("a.weight".into(), vec![2, 1], vec![1.0, 2.0]),
                ("a.bias".into(), vec![2], vec![0.5, -0.5]),
            ],
        )
    }

    #[test]
    fn round_trip_and_checked_take() {
        let dir = tempfile::tempdir().expect("valid test input");
        let path = dir.path().join("toy.umw");
        sample().save(&path).expect("valid test input");
        let w = Weights::open(&path).expect("valid test input");
        assert_eq!(w.header.model, "toy");
        let err = w
            .take("a.weight", &[1, 2])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("[2, 1]") && err.contains("[1, 2]"), "{err}");
        assert_eq!(
            w.take("a.bias", &[2]).expect("valid test input"),
            vec![0.5, -0.5]
        );
        assert!(
            w.take("b.weight", &[1])
                .expect_err("must fail")
                .to_string()
                .contains("b.weight")
        );
        assert!(w.check_all_used().is_ok());
    }

    #[test]
    fn truncated_and_foreign_files_are_named() {
        let dir = tempfile::tempdir().expect("valid test input");
        let path = dir.path().join("toy.umw");
        sample().save(&path).expect("valid test input");
        let bytes = std::fs::read(&path).expect("valid test input");
        let err = Weights::from_bytes(&bytes[..bytes.len() - 3])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("truncated") && err.contains("a.bias"), "{err}");
        let err = Weights::from_bytes(b"\x08\x07ONNX...")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("magic"), "{err}");
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(
            Weights::from_bytes(&long)
                .expect_err("must fail")
                .to_string()
                .contains("8 bytes after")
        );
    }
}
