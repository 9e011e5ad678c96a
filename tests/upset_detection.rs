//! The upset detector of the shipped flow with the real sentence-embedding model, on
//! sentences written apart from the flow's own phrases and examples: a tuning set (what
//! `upset.min_similarity` was chosen on) and a held-out set nothing was tuned on, reported
//! apart; and the whole spoken corpus's texts (every one a calm request), which must not
//! count as upset. Needs the embedding model (`scripts/fetch-embedder.sh`).

mod support;

use ivrd::asr::embed::{Embedder, TextEmbedder};
use ivrd::asr::matcher::Heard;
use support::{repo_root, DaemonOpts, TempDir};

struct Score {
    upset_found: usize,
    upset: usize,
    calm_flagged: usize,
    calm: usize,
    missed: Vec<String>,
    flagged: Vec<String>,
}

fn score(
    detector: &ivrd::asr::upset::UpsetDetector,
    embedder: &Embedder,
    rows: &[(String, String)],
) -> Score {
    let mut s = Score {
        upset_found: 0,
        upset: 0,
        calm_flagged: 0,
        calm: 0,
        missed: Vec::new(),
        flagged: Vec::new(),
    };
    for (label, text) in rows {
        let embedding = embedder.embed(&[text.as_str()]).unwrap().pop();
        let heard = Heard {
            text: text.clone(),
            closed: None,
            embedding,
        };
        let upset = detector.check(&heard).is_some();
        let (u, c) = detector.similarities(heard.embedding.as_deref().unwrap());
        let shown = format!("{text} ({u:.2} vs calm {c:.2})");
        if label == "upset" {
            s.upset += 1;
            if upset {
                s.upset_found += 1;
            } else {
                s.missed.push(shown);
            }
        } else {
            s.calm += 1;
            if upset {
                s.calm_flagged += 1;
                s.flagged.push(shown);
            } else if std::env::var("IVRD_UPSET_DEBUG").is_ok() {
                eprintln!("calm ok: {shown}");
            }
        }
    }
    s
}

fn rows(file: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(repo_root().join("tests/data/upset").join(file))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn upset_callers_are_noticed_and_calm_ones_are_not() {
    let Some(dir) = support::asr_embedder() else {
        return;
    };
    let embedder = Embedder::load(&dir).expect("the embedding model");
    // The shipped flow, compiled as the daemon compiles it (with the embedder).
    let tmp = TempDir::new("upset");
    let cfg_path = DaemonOpts::default().write_config(tmp.path());
    let cfg = ivrd::config::Config::load(&cfg_path).unwrap();
    let (flows, _) = ivrd::io::load_flows(&cfg, Some(&embedder as &dyn TextEmbedder)).unwrap();
    let upset = flows
        .default
        .upset
        .as_ref()
        .expect("the shipped flow has an upset handler");
    assert!(upset.detector.by_meaning());
    let detector = &upset.detector;

    let tune = score(detector, &embedder, &rows("tune.tsv"));
    let holdout = score(detector, &embedder, &rows("holdout.tsv"));
    let corpus: Vec<(String, String)> =
        std::fs::read_to_string(repo_root().join("tests/corpus/corpus.tsv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.split('\t')
                    .nth(3)
                    .map(|t| ("calm".to_string(), t.to_string()))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    let spoken = score(detector, &embedder, &corpus);
    for (name, s) in [
        ("tune", &tune),
        ("holdout", &holdout),
        ("corpus texts", &spoken),
    ] {
        eprintln!(
            "{name:>12}: upset noticed {}/{}, calm taken for upset {}/{}\n    missed {:?}\n    flagged {:?}",
            s.upset_found, s.upset, s.calm_flagged, s.calm, s.missed, s.flagged
        );
    }
    // Floors for the held-out half, below what was measured (4/15 noticed, 0/15 calm
    // flagged, 0/123 corpus requests flagged): sentence similarity notices anger that is
    // put plainly, not every turn of phrase (the words list and repeated failures cover
    // more); a calm caller must almost never hear an apology meant for an upset one.
    assert!(
        holdout.upset_found * 5 >= holdout.upset,
        "held-out upset callers noticed: {}/{}",
        holdout.upset_found,
        holdout.upset
    );
    assert!(
        holdout.calm_flagged * 10 <= holdout.calm,
        "held-out calm callers taken for upset: {}/{}",
        holdout.calm_flagged,
        holdout.calm
    );
    assert!(
        spoken.calm_flagged * 50 <= spoken.calm,
        "corpus requests taken for upset: {}/{}",
        spoken.calm_flagged,
        spoken.calm
    );
}
