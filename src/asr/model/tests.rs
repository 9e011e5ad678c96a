//! End-to-end import tests on a synthetic CTranslate2 model (1 encoder and 1 decoder layer,
//! width 32) whose every value is known, read back with a small ggml parser.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ct2::Ct2Model;
use super::ggml::{quantize_q8_0, MAGIC};
use super::half::{f16_to_f32, f32_to_f16};
use super::*;

const STATE: usize = 32;
const HEADS: i16 = 2;
const MELS: usize = 80;
const AUDIO_CTX: usize = 6;
const TEXT_CTX: usize = 4;
/// tiny.en's vocabulary size: whisper.cpp's special-token numbering depends on it.
const VOCAB: usize = 51864;
const END_OF_TEXT_ID: usize = 50256;

/// A deterministic value for element (row, col) of tensor number `seed`; multiples of 1/64 in
/// [-0.5, 0.5], exact in f16 so read-back can compare bits.
fn value(seed: usize, row: usize, col: usize) -> f32 {
    ((seed * 7 + row * 3 + col) % 61) as f32 / 64.0 - 30.0 / 64.0
}

/// Builds CTranslate2 `model.bin` bytes.
#[derive(Default)]
struct Ct2Builder {
    vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
}

impl Ct2Builder {
    fn raw(&mut self, name: &str, shape: &[usize], dtype: u8, data: Vec<u8>) {
        self.vars
            .push((name.to_owned(), shape.to_vec(), dtype, data));
    }

    /// An f16 variable filled with `value(seed, row, col)`, rows = outermost dimension.
    fn f16(&mut self, name: &str, shape: &[usize]) {
        let seed = self.vars.len();
        let rows = shape[0];
        let cols: usize = shape[1..].iter().product();
        let data = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| value(seed, r, c)))
            .flat_map(|v| f32_to_f16(v).to_le_bytes())
            .collect();
        self.raw(name, shape, 4, data);
    }

    fn linear(&mut self, prefix: &str, outputs: usize, inputs: usize) {
        self.f16(&format!("{prefix}/weight"), &[outputs, inputs]);
        // Biases count up, so a slice shows where it came from: bias[i] = i / 8.
        let bias = (0..outputs)
            .flat_map(|i| f32_to_f16(i as f32 / 8.0).to_le_bytes())
            .collect();
        self.raw(&format!("{prefix}/bias"), &[outputs], 4, bias);
    }

    fn norm(&mut self, prefix: &str) {
        self.f16(&format!("{prefix}/gamma"), &[STATE]);
        self.f16(&format!("{prefix}/beta"), &[STATE]);
    }

    fn bytes(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u16 + 1).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        out.extend((self.vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in &self.vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for &d in shape {
                out.extend((d as u32).to_le_bytes());
            }
            out.push(*dtype);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend(1u32.to_le_bytes());
        string(&mut out, "decoder/projection/weight");
        string(&mut out, "decoder/embeddings/weight");
        out
    }
}

/// The synthetic model, shaped like CTranslate2's Whisper export.
fn synthetic_model() -> Ct2Builder {
    let s = STATE;
    let mut b = Ct2Builder::default();
    b.raw("decoder/num_heads", &[], 2, HEADS.to_le_bytes().to_vec());
    b.raw("encoder/num_heads", &[], 2, HEADS.to_le_bytes().to_vec());
    b.f16("encoder/conv1/weight", &[s, MELS, 3]);
    b.f16("encoder/conv1/bias", &[s]);
    b.f16("encoder/conv2/weight", &[s, s, 3]);
    b.f16("encoder/conv2/bias", &[s]);
    b.f16("encoder/position_encodings/encodings", &[AUDIO_CTX, s]);
    b.norm("encoder/layer_norm");
    b.f16("decoder/embeddings/weight", &[VOCAB, s]);
    b.f16("decoder/position_encodings/encodings", &[TEXT_CTX, s]);
    b.norm("decoder/layer_norm");
    for side in ["encoder", "decoder"] {
        let l = format!("{side}/layer_0");
        b.norm(&format!("{l}/self_attention/layer_norm"));
        b.linear(&format!("{l}/self_attention/linear_0"), 3 * s, s);
        b.linear(&format!("{l}/self_attention/linear_1"), s, s);
        b.norm(&format!("{l}/ffn/layer_norm"));
        b.linear(&format!("{l}/ffn/linear_0"), 4 * s, s);
        b.linear(&format!("{l}/ffn/linear_1"), s, 4 * s);
    }
    let l = "decoder/layer_0/attention";
    b.norm(&format!("{l}/layer_norm"));
    b.linear(&format!("{l}/linear_0"), s, s);
    b.linear(&format!("{l}/linear_1"), 2 * s, s);
    b.linear(&format!("{l}/linear_2"), s, s);
    b
}

/// tokenizer.json with tiny.en's layout: 50256 ordinary tokens, then the specials.
fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    let mut add = |token: &str, id: usize| vocab.insert(token.to_owned(), id.into());
    add("!", 0);
    add("Ġhello", 1);
    add("Ċ", 2);
    add("Ã©", 3);
    for id in 4..END_OF_TEXT_ID {
        add(&format!("t{id}"), id);
    }
    add("<|endoftext|>", END_OF_TEXT_ID);
    add("<|startoftranscript|>", END_OF_TEXT_ID + 1);
    serde_json::json!({ "model": { "type": "BPE", "vocab": vocab, "merges": [] } }).to_string()
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ivrd-model-test-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .expect("read temp dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A CT2 directory holding `model`.
fn ct2_dir(model: &[u8]) -> TempDir {
    let dir = TempDir::new();
    fs::write(dir.path().join("model.bin"), model).expect("write model.bin");
    fs::write(dir.path().join("tokenizer.json"), tokenizer_json()).expect("write tokenizer");
    fs::write(
        dir.path().join("config.json"),
        r#"{"suppress_ids_begin": [220, 50256]}"#,
    )
    .expect("write config");
    dir
}

/// A parsed ggml file.
struct GgmlFile {
    magic: u32,
    hparams: [i32; 11],
    n_mel: i32,
    n_freq: i32,
    filters: Vec<f32>,
    vocab: Vec<Vec<u8>>,
    tensors: Vec<Tensor>,
}

struct Tensor {
    name: String,
    ty: i32,
    ne: Vec<i32>,
    data: Vec<u8>,
}

impl Tensor {
    fn f16_at(&self, i: usize) -> f32 {
        f16_to_f32(u16::from_le_bytes([self.data[2 * i], self.data[2 * i + 1]]))
    }

    fn f32_at(&self, i: usize) -> f32 {
        let b = &self.data[4 * i..4 * i + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// Reads the test's own output; panics (test failure) on anything malformed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        s
    }

    fn i32(&mut self) -> i32 {
        let b = self.take(4);
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

impl GgmlFile {
    fn read(path: &Path) -> Self {
        let bytes = fs::read(path).expect("read ggml output");
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let magic = c.i32() as u32;
        let mut hparams = [0; 11];
        for h in &mut hparams {
            *h = c.i32();
        }
        let n_mel = c.i32();
        let n_freq = c.i32();
        let filters = c
            .take(4 * (n_mel * n_freq) as usize)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let n_vocab = c.i32();
        let vocab = (0..n_vocab)
            .map(|_| {
                let len = c.i32() as usize;
                c.take(len).to_vec()
            })
            .collect();
        let mut tensors = Vec::new();
        while !c.at_end() {
            let n_dims = c.i32();
            let name_len = c.i32() as usize;
            let ty = c.i32();
            let ne: Vec<i32> = (0..n_dims).map(|_| c.i32()).collect();
            let name = String::from_utf8(c.take(name_len).to_vec()).expect("utf-8 name");
            let n: usize = ne.iter().map(|&d| d as usize).product();
            let size = match ty {
                0 => 4 * n,
                1 => 2 * n,
                8 => n / 32 * 34,
                6 => n / 32 * 22,
                other => panic!("unexpected tensor type {other}"),
            };
            let data = c.take(size).to_vec();
            tensors.push(Tensor { name, ty, ne, data });
        }
        GgmlFile {
            magic,
            hparams,
            n_mel,
            n_freq,
            filters,
            vocab,
            tensors,
        }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
}

fn import_synthetic(weights: WeightType) -> (ImportReport, GgmlFile) {
    let dir = ct2_dir(&synthetic_model().bytes());
    let out = dir.path().join("out.bin");
    let report = import(dir.path(), &out, weights).expect("import");
    assert_eq!(
        report.bytes_written,
        fs::metadata(&out).expect("stat").len()
    );
    // Only the finished file is left next to the inputs.
    assert_eq!(
        dir.entries(),
        ["config.json", "model.bin", "out.bin", "tokenizer.json"]
    );
    (report, GgmlFile::read(&out))
}

#[test]
fn f16_import_writes_whisper_cpp_layout() {
    let (report, g) = import_synthetic(WeightType::F16);

    assert_eq!(g.magic, MAGIC);
    let s = STATE as i32;
    #[rustfmt::skip]
    let expected = [VOCAB as i32, AUDIO_CTX as i32, s, HEADS.into(), 1, TEXT_CTX as i32, s, HEADS.into(), 1, MELS as i32, 1];
    assert_eq!(g.hparams, expected);

    assert_eq!((g.n_mel, g.n_freq), (80, 201));
    assert!((g.filters[1] - 0.024_862_59).abs() < 1e-6);

    assert_eq!(g.vocab.len(), END_OF_TEXT_ID);
    assert_eq!(g.vocab[0], b"!");
    assert_eq!(g.vocab[1], b" hello");
    assert_eq!(g.vocab[2], b"\n");
    assert_eq!(g.vocab[3], "é".as_bytes());
    assert_eq!(
        g.vocab[END_OF_TEXT_ID - 1],
        format!("t{}", END_OF_TEXT_ID - 1).as_bytes()
    );

    assert_eq!(g.tensors.len(), 11 + 15 + 24);
    let report_expected = ImportReport {
        tensors: 50,
        n_vocab: VOCAB,
        vocab_tokens: END_OF_TEXT_ID,
        audio_layers: 1,
        text_layers: 1,
        bytes_written: report.bytes_written,
        weight_type: WeightType::F16,
    };
    assert_eq!(report, report_expected);

    // Names are unique and are exactly what whisper.cpp looks up.
    let names: HashMap<&str, &Tensor> = g.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(names.len(), g.tensors.len());
    for name in expected_names() {
        assert!(names.contains_key(name.as_str()), "missing {name}");
    }
    assert!(!names.contains_key("encoder.blocks.0.attn.key.bias"));
    assert!(!names.contains_key("decoder.blocks.0.cross_attn.key.bias"));

    // Types and dims (ggml order: innermost first).
    let check = |name: &str, ty: i32, ne: &[i32]| {
        let t = names[name];
        assert_eq!((t.ty, t.ne.as_slice()), (ty, ne), "{name}");
    };
    check("encoder.positional_embedding", 0, &[s, AUDIO_CTX as i32]);
    check("decoder.positional_embedding", 0, &[s, TEXT_CTX as i32]);
    check("encoder.conv1.weight", 1, &[3, MELS as i32, s]);
    check("encoder.conv1.bias", 0, &[1, s]);
    check("encoder.conv2.weight", 1, &[3, s, s]);
    check("encoder.ln_post.weight", 0, &[s]);
    check("decoder.token_embedding.weight", 1, &[s, VOCAB as i32]);
    check("decoder.blocks.0.mlp.0.weight", 1, &[s, 4 * s]);
    check("decoder.blocks.0.mlp.0.bias", 0, &[4 * s]);
    check("decoder.blocks.0.mlp.2.weight", 1, &[4 * s, s]);
    check("encoder.blocks.0.attn.key.weight", 1, &[s, s]);
    check("decoder.blocks.0.cross_attn.value.bias", 0, &[s]);
    for t in &g.tensors {
        let small =
            t.ne.len() == 1 || t.name.ends_with("positional_embedding") || t.name.ends_with("bias");
        let expected_ty = if small { 0 } else { 1 };
        assert_eq!(t.ty, expected_ty, "{}", t.name);
    }

    // A known value, copied bit for bit: token embedding row 5, column 7.
    let emb = names["decoder.token_embedding.weight"];
    let seed = synthetic_seed("decoder/embeddings/weight");
    assert_eq!(emb.f16_at(5 * STATE + 7), value(seed, 5, 7));

    // q|k|v split by rows: key row 0 is fused row STATE, value row 0 is fused row 2 x STATE.
    let seed = synthetic_seed("encoder/layer_0/self_attention/linear_0/weight");
    for (part, offset) in [("query", 0), ("key", STATE), ("value", 2 * STATE)] {
        let t = names[format!("encoder.blocks.0.attn.{part}.weight").as_str()];
        assert_eq!(t.f16_at(3), value(seed, offset, 3), "{part}");
        assert_eq!(t.f16_at(STATE + 1), value(seed, offset + 1, 1), "{part}");
    }
    // Bias slices: bias[i] = i / 8 in the fused tensor; value skips the dropped key bias.
    let q_bias = names["encoder.blocks.0.attn.query.bias"];
    let v_bias = names["encoder.blocks.0.attn.value.bias"];
    assert_eq!(q_bias.f32_at(3), 3.0 / 8.0);
    assert_eq!(v_bias.f32_at(3), (2 * STATE + 3) as f32 / 8.0);
    let cross_v_bias = names["decoder.blocks.0.cross_attn.value.bias"];
    assert_eq!(cross_v_bias.f32_at(0), STATE as f32 / 8.0);
}

/// The seed `Ct2Builder::f16` used for `name` (its index among the variables).
fn synthetic_seed(name: &str) -> usize {
    synthetic_model()
        .vars
        .iter()
        .position(|v| v.0 == name)
        .expect("variable exists")
}

fn expected_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "encoder.positional_embedding",
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        "decoder.ln.weight",
        "decoder.ln.bias",
    ]
    .map(String::from)
    .to_vec();
    let block = [
        "attn_ln.weight",
        "attn_ln.bias",
        "attn.query.weight",
        "attn.query.bias",
        "attn.key.weight",
        "attn.value.weight",
        "attn.value.bias",
        "attn.out.weight",
        "attn.out.bias",
        "mlp_ln.weight",
        "mlp_ln.bias",
        "mlp.0.weight",
        "mlp.0.bias",
        "mlp.2.weight",
        "mlp.2.bias",
    ];
    let cross = [
        "cross_attn_ln.weight",
        "cross_attn_ln.bias",
        "cross_attn.query.weight",
        "cross_attn.query.bias",
        "cross_attn.key.weight",
        "cross_attn.value.weight",
        "cross_attn.value.bias",
        "cross_attn.out.weight",
        "cross_attn.out.bias",
    ];
    names.extend(block.iter().map(|n| format!("encoder.blocks.0.{n}")));
    names.extend(
        block
            .iter()
            .chain(&cross)
            .map(|n| format!("decoder.blocks.0.{n}")),
    );
    assert_eq!(names.len(), 50);
    names
}

#[test]
fn q8_0_import_quantizes_only_matrices() {
    let (report, g) = import_synthetic(WeightType::Q8_0);
    assert_eq!(report.weight_type, WeightType::Q8_0);
    assert_eq!(g.hparams[10], 2007); // GGML_FTYPE_MOSTLY_Q8_0 + 1000 x GGML_QNT_VERSION
    assert_eq!(g.tensors.len(), 50);
    for t in &g.tensors {
        let expected = if t.name.contains("conv") && t.name.ends_with("weight") {
            1 // conv kernels stay f16
        } else if t.ne.len() == 1
            || t.name.ends_with("positional_embedding")
            || t.name.ends_with("bias")
        {
            0
        } else {
            8
        };
        assert_eq!(t.ty, expected, "{}", t.name);
    }
    // The first block of token embedding row 2 equals quantizing the source values.
    let seed = synthetic_seed("decoder/embeddings/weight");
    let row: Vec<f32> = (0..32).map(|c| value(seed, 2, c)).collect();
    let mut block = Vec::new();
    quantize_q8_0(&row, &mut block);
    let emb = g.tensor("decoder.token_embedding.weight");
    assert_eq!(&emb.data[2 * 34..3 * 34], block.as_slice());
}

#[test]
fn q5_0_import_sets_types_and_ftype() {
    let (_, g) = import_synthetic(WeightType::Q5_0);
    assert_eq!(g.hparams[10], 2008);
    assert_eq!(g.tensor("decoder.blocks.0.mlp.0.weight").ty, 6);
    assert_eq!(g.tensor("encoder.conv2.weight").ty, 1);
    assert_eq!(g.tensor("decoder.blocks.0.mlp.0.bias").ty, 0);
}

#[test]
fn int8_weights_are_dequantized_with_row_scales() {
    let mut b = synthetic_model();
    let name = "encoder/layer_0/ffn/linear_1/weight";
    let idx = b.vars.iter().position(|v| v.0 == name).expect("present");
    // Row r holds q = c - 64 (c = column), scale 2^(r % 4): w = q / scale, exact in f16.
    let (rows, cols) = (STATE, 4 * STATE);
    let q: Vec<u8> = (0..rows)
        .flat_map(|_| (0..cols).map(|c| (c as i8 - 64) as u8))
        .collect();
    b.vars[idx] = (name.to_owned(), vec![rows, cols], 1, q);
    let scales = (0..rows)
        .flat_map(|r| 2f32.powi((r % 4) as i32).to_le_bytes())
        .collect();
    b.raw(
        "encoder/layer_0/ffn/linear_1/weight_scale",
        &[rows],
        0,
        scales,
    );

    let dir = ct2_dir(&b.bytes());
    let out = dir.path().join("out.bin");
    import(dir.path(), &out, WeightType::F16).expect("import");
    let t = GgmlFile::read(&out);
    let w = t.tensor("encoder.blocks.0.mlp.2.weight");
    assert_eq!(w.ty, 1);
    for (r, c) in [(0, 0), (1, 70), (3, 127), (6, 5)] {
        let expected = (c as f32 - 64.0) / 2f32.powi((r % 4) as i32);
        assert_eq!(w.f16_at(r * cols + c), expected, "({r}, {c})");
    }
}

#[test]
fn truncated_model_is_an_error_not_a_panic() {
    let bytes = synthetic_model().bytes();
    let path = Path::new("model.bin");
    // Every cut in the header region and a spread of cuts through the data.
    let cuts = (0..600).chain((600..bytes.len()).step_by(bytes.len() / 97));
    for cut in cuts {
        let err = Ct2Model::parse(&bytes[..cut], cut as u64, path).expect_err("truncated");
        assert!(
            matches!(err, ModelError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }

    // Through import: a clear message, and no output file of any kind.
    let dir = ct2_dir(&bytes[..bytes.len() / 2]);
    let out = dir.path().join("out.bin");
    let err = import(dir.path(), &out, WeightType::F16).expect_err("truncated");
    let msg = err.to_string();
    assert!(
        msg.contains("model.bin") && msg.contains("truncated"),
        "{msg}"
    );
    assert_eq!(
        dir.entries(),
        ["config.json", "model.bin", "tokenizer.json"]
    );
}

#[test]
fn corrupt_headers_are_named() {
    let path = Path::new("model.bin");
    let good = synthetic_model().bytes();
    let parse = |bytes: &[u8]| Ct2Model::parse(bytes, bytes.len() as u64, path).expect_err("bad");

    let mut bad_version = good.clone();
    bad_version[0] = 5;
    let msg = parse(&bad_version).to_string();
    assert!(msg.contains("binary version 5"), "{msg}");

    let mut bad_spec = good.clone();
    bad_spec[6] = b'X'; // "WhisperSpec" -> "XhisperSpec"
    assert!(matches!(parse(&bad_spec), ModelError::NotCt2Whisper { .. }));

    // A variable that claims 2^32 x 2^32 f32 elements: refused without allocating.
    let mut b = Ct2Builder::default();
    b.raw(
        "huge",
        &[u32::MAX as usize, u32::MAX as usize],
        0,
        Vec::new(),
    );
    assert!(matches!(parse(&b.bytes()), ModelError::Corrupt { .. }));

    let mut extra = good.clone();
    extra.extend([0; 3]);
    assert!(parse(&extra).to_string().contains("3 unexpected bytes"));
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let mut b = synthetic_model();
    b.vars
        .retain(|v| v.0 != "decoder/layer_0/attention/linear_2/bias");
    let dir = ct2_dir(&b.bytes());
    let err =
        import(dir.path(), &dir.path().join("out.bin"), WeightType::F16).expect_err("missing");
    assert!(
        err.to_string()
            .contains("decoder/layer_0/attention/linear_2/bias"),
        "{err}"
    );

    let mut b = synthetic_model();
    b.f16("encoder/layer_0/ffn/linear_0/weight", &[STATE, STATE]);
    let name = "encoder/layer_0/ffn/linear_0/weight";
    let first = b.vars.iter().position(|v| v.0 == name).expect("present");
    b.vars.remove(first);
    let dir = ct2_dir(&b.bytes());
    let err = import(dir.path(), &dir.path().join("out.bin"), WeightType::F16).expect_err("shape");
    let msg = err.to_string();
    assert!(
        msg.contains(name) && msg.contains("[32, 32]") && msg.contains("[128, 32]"),
        "{msg}"
    );
}

#[test]
fn failed_import_keeps_existing_output() {
    let dir = ct2_dir(b"not a model");
    let out = dir.path().join("out.bin");
    fs::write(&out, b"previous model").expect("write");
    assert!(import(dir.path(), &out, WeightType::F16).is_err());
    assert_eq!(fs::read(&out).expect("read"), b"previous model");
}

#[test]
fn split_model_gets_a_hint() {
    let dir = TempDir::new();
    fs::write(dir.path().join("model.bin.part1"), b"").expect("write");
    let err = import(dir.path(), &dir.path().join("out.bin"), WeightType::F16).expect_err("split");
    assert!(err.to_string().contains("concatenate"), "{err}");
}

#[test]
fn weight_type_parses_its_names() {
    for t in [WeightType::F16, WeightType::Q8_0, WeightType::Q5_0] {
        assert_eq!(t.as_str().parse::<WeightType>().expect("parses"), t);
    }
    assert!("q4_0".parse::<WeightType>().is_err());
    assert!("F16".parse::<WeightType>().is_err());
}
