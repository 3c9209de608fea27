//! Just enough of the ONNX protobuf to read a convolutional network's weights: the graph's
//! nodes (op type, name, inputs, outputs, attributes) and its tensors (initializers and
//! `Constant` values), in float32, float16 or float64.
//!
//! ONNX is a protobuf; the wire format is simple enough that a small reader here spares the
//! build a protobuf compiler and a generated 5,000-line module.

use std::collections::HashMap;

use crate::ModelError;

/// A tensor of the graph, converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxTensor {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

/// An attribute value of a node (only the kinds convolutional graphs use).
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// One integer.
    Int(i64),
    /// One float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
    /// Bytes (a string).
    Bytes(Vec<u8>),
    /// A tensor (the `value` of a `Constant`).
    Tensor(OnnxTensor),
    /// A kind this reader does not decode.
    Other,
}

/// One node of the graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// Node name, for example `/stage1/rebnconvin/conv_s1/Conv`; may be empty.
    pub name: String,
    /// Operator, for example `Conv`.
    pub op_type: String,
    /// Input value names; an empty name is an absent optional input.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attributes: HashMap<String, Attribute>,
}

impl Node {
    /// An integer-list attribute, or `default` when absent.
    pub fn ints(&self, name: &str, default: &[i64]) -> Vec<i64> {
        match self.attributes.get(name) {
            Some(Attribute::Ints(v)) => v.clone(),
            _ => default.to_vec(),
        }
    }

    /// An integer attribute, or `default` when absent.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attributes.get(name) {
            Some(Attribute::Int(v)) => *v,
            _ => default,
        }
    }

    /// A float attribute, or `default` when absent.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attributes.get(name) {
            Some(Attribute::Float(v)) => *v,
            _ => default,
        }
    }
}

/// The parts of an ONNX model a weight import needs.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    /// Nodes in file order (which need not be dependency order).
    pub nodes: Vec<Node>,
    /// Initializers by name.
    pub initializers: HashMap<String, OnnxTensor>,
}

impl OnnxGraph {
    /// Parses a serialized `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut graph = None;
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            if number == 7 {
                graph = Some(parse_graph(value.bytes("graph")?)?);
            }
        }
        graph.ok_or_else(|| ModelError::Onnx("the file has no graph (is it an ONNX model?)".into()))
    }

    /// The tensor behind a value name: an initializer, a `Constant`'s value, or either of
    /// those seen through `Cast` and `Identity` nodes (float16 exports cast weights).
    pub fn tensor(&self, value: &str) -> Option<&OnnxTensor> {
        if let Some(t) = self.initializers.get(value) {
            return Some(t);
        }
        let producer = self
            .nodes
            .iter()
            .find(|n| n.outputs.iter().any(|o| o == value))?;
        match producer.op_type.as_str() {
            "Constant" => match producer.attributes.get("value") {
                Some(Attribute::Tensor(t)) => Some(t),
                _ => None,
            },
            "Cast" | "Identity" => self.tensor(producer.inputs.first()?),
            _ => None,
        }
    }
}

fn parse_graph(bytes: &[u8]) -> Result<OnnxGraph, ModelError> {
    let mut graph = OnnxGraph::default();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        match number {
            1 => graph.nodes.push(parse_node(value.bytes("node")?)?),
            5 => {
                let (name, tensor) = parse_tensor(value.bytes("initializer")?)?;
                graph.initializers.insert(name, tensor);
            }
            _ => {}
        }
    }
    Ok(graph)
}

fn parse_node(bytes: &[u8]) -> Result<Node, ModelError> {
    let mut node = Node::default();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        match number {
            1 => node.inputs.push(value.string("node input")?),
            2 => node.outputs.push(value.string("node output")?),
            3 => node.name = value.string("node name")?,
            4 => node.op_type = value.string("op type")?,
            5 => {
                let (name, attribute) = parse_attribute(value.bytes("attribute")?)?;
                node.attributes.insert(name, attribute);
            }
            _ => {}
        }
    }
    Ok(node)
}

fn parse_attribute(bytes: &[u8]) -> Result<(String, Attribute), ModelError> {
    let mut name = String::new();
    let mut attribute = Attribute::Other;
    let mut ints = Vec::new();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        match number {
            1 => name = value.string("attribute name")?,
            2 => attribute = Attribute::Float(f32::from_bits(value.fixed32("attribute f")?)),
            3 => attribute = Attribute::Int(value.varint("attribute i")? as i64),
            4 => attribute = Attribute::Bytes(value.bytes("attribute s")?.to_vec()),
            5 => attribute = Attribute::Tensor(parse_tensor(value.bytes("attribute t")?)?.1),
            8 => value.push_varints(&mut ints, "attribute ints")?,
            _ => {}
        }
    }
    if !ints.is_empty() {
        attribute = Attribute::Ints(ints.into_iter().map(|v| v as i64).collect());
    }
    Ok((name, attribute))
}

/// ONNX `TensorProto.DataType` values this reader converts.
const FLOAT: u64 = 1;
const FLOAT16: u64 = 10;
const DOUBLE: u64 = 11;

fn parse_tensor(bytes: &[u8]) -> Result<(String, OnnxTensor), ModelError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut raw: Option<&[u8]> = None;
    let mut floats = Vec::new();
    let mut int32s = Vec::new();
    let mut external = false;
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        match number {
            1 => value.push_varints(&mut dims, "tensor dims")?,
            2 => data_type = value.varint("tensor data type")?,
            4 => match value {
                Value::Bytes(b) => floats.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                other => floats.push(f32::from_bits(other.fixed32("float data")?)),
            },
            5 => value.push_varints(&mut int32s, "int32 data")?,
            8 => name = value.string("tensor name")?,
            9 => raw = Some(value.bytes("raw data")?),
            14 => external = value.varint("data location")? == 1,
            _ => {}
        }
    }
    if external {
        return Err(ModelError::Onnx(format!(
            "tensor {name:?} keeps its data in an external file; save the model with its \
             weights inside (onnx.save(..., save_as_external_data=False))"
        )));
    }
    let count: usize = dims.iter().map(|&d| d as usize).product();
    let data: Vec<f32> = match (data_type, raw) {
        (FLOAT, Some(b)) => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        (FLOAT, None) => floats,
        (FLOAT16, Some(b)) => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        (FLOAT16, None) => int32s
            .iter()
            .map(|&v| half::f16::from_bits(v as u16).to_f32())
            .collect(),
        (DOUBLE, Some(b)) => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        // Integer tensors (shapes, indices) are not weights: keep their shape only.
        _ => Vec::new(),
    };
    if !data.is_empty() && data.len() != count {
        return Err(ModelError::Onnx(format!(
            "tensor {name:?} has {} values but its shape {dims:?} needs {count}",
            data.len()
        )));
    }
    Ok((
        name,
        OnnxTensor {
            dims: dims.into_iter().map(|d| d as usize).collect(),
            data,
        },
    ))
}

/// A field's value, by wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn bytes(self, what: &str) -> Result<&'a [u8], ModelError> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(wire(what)),
        }
    }

    fn string(self, what: &str) -> Result<String, ModelError> {
        Ok(String::from_utf8_lossy(self.bytes(what)?).into_owned())
    }

    fn varint(self, what: &str) -> Result<u64, ModelError> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(wire(what)),
        }
    }

    fn fixed32(self, what: &str) -> Result<u32, ModelError> {
        match self {
            Value::Fixed32(v) => Ok(v),
            _ => Err(wire(what)),
        }
    }

    /// A repeated varint field, packed (one length-delimited run) or not.
    fn push_varints(self, out: &mut Vec<u64>, what: &str) -> Result<(), ModelError> {
        match self {
            Value::Varint(v) => out.push(v),
            Value::Bytes(mut b) => {
                while !b.is_empty() {
                    out.push(read_varint(&mut b).ok_or_else(|| wire(what))?);
                }
            }
            _ => return Err(wire(what)),
        }
        Ok(())
    }
}

fn wire(what: &str) -> ModelError {
    ModelError::Onnx(format!(
        "malformed protobuf: unexpected wire type for {what}"
    ))
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = read_varint(&mut self.rest)?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut self.rest)?),
            1 => {
                let (_, rest) = self.rest.split_first_chunk::<8>()?;
                self.rest = rest;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(read_varint(&mut self.rest)?).ok()?;
                if len > self.rest.len() {
                    return None;
                }
                let (b, rest) = self.rest.split_at(len);
                self.rest = rest;
                Value::Bytes(b)
            }
            5 => {
                let (b, rest) = self.rest.split_first_chunk::<4>()?;
                self.rest = rest;
                Value::Fixed32(u32::from_le_bytes(*b))
            }
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), ModelError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match self.next_field() {
            Some(field) => Some(Ok(field)),
            None => {
                self.failed = true;
                Some(Err(ModelError::Onnx(
                    "truncated or malformed protobuf (the file is cut short or is not ONNX)".into(),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a protobuf field (test helper: the reader's inverse for the types used).
    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, number << 3 | 2);
        varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn tensor(name: &str, dims: &[u64], data_type: u64, raw: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        let mut packed = Vec::new();
        for &d in dims {
            varint(&mut packed, d);
        }
        t.extend(field(1, &packed));
        varint(&mut t, 2 << 3);
        varint(&mut t, data_type);
        t.extend(field(8, name.as_bytes()));
        t.extend(field(9, raw));
        t
    }

    #[test]
    fn reads_float16_and_float32_initializers_and_nodes() {
        let half_raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let f32_raw: Vec<u8> = [0.25f32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut node = Vec::new();
        node.extend(field(1, b"x"));
        node.extend(field(1, b"w"));
        node.extend(field(2, b"y"));
        node.extend(field(3, b"/a/Conv"));
        node.extend(field(4, b"Conv"));
        let mut attr = field(1, b"dilations");
        attr.extend(field(8, &[2, 2]));
        node.extend(field(5, &attr));
        let mut graph = field(1, &node);
        graph.extend(field(5, &tensor("w", &[2], FLOAT16, &half_raw)));
        graph.extend(field(5, &tensor("b", &[1], FLOAT, &f32_raw)));
        let model = field(7, &graph);

        let g = OnnxGraph::parse(&model).expect("valid test input");
        assert_eq!(g.nodes[0].op_type, "Conv");
        assert_eq!(g.nodes[0].ints("dilations", &[1, 1]), vec![2, 2]);
        assert_eq!(
            g.tensor("w").expect("valid test input").data,
            vec![1.5, -2.0]
        );
        assert_eq!(g.tensor("b").expect("valid test input").dims, vec![1]);
    }

    #[test]
    fn truncated_files_are_named() {
        let graph = field(5, &tensor("w", &[4], FLOAT, &[0; 16]));
        let model = field(7, &graph);
        let err = OnnxGraph::parse(&model[..model.len() - 5]).expect_err("must fail");
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = OnnxGraph::parse(b"\x89PNG\r\n").expect_err("must fail");
        assert!(
            err.to_string().contains("ONNX") || err.to_string().contains("protobuf"),
            "{err}"
        );
    }
}
