use super::*;

/// The phrase lists proposed for flows/support-line.yaml's main menu (the same the corpus
/// tests and the benchmark use).
fn support_line() -> Matcher {
    crate::bench::asr::support_line_matcher()
}

/// What the route would be at min_confidence 0.6.
fn route(m: &Matcher, transcript: &str) -> String {
    let r = m.score(transcript);
    if r.escalation {
        return "escalation".into();
    }
    match r.best {
        Some((intent, c)) if c >= 0.6 => intent,
        Some((intent, _)) => format!("low_confidence({intent})"),
        None => "no_match".into(),
    }
}

#[test]
fn normalisation() {
    assert_eq!(normalize("  Hello, World!  "), "hello world");
    assert_eq!(normalize("It's my BILL."), "its my bill");
    assert_eq!(normalize("Press 1 or 24/7"), "press one or two four seven");
    assert_eq!(normalize("tech-support"), "tech support");
    assert_eq!(normalize("Ça coûte"), "ça coûte");
    assert_eq!(normalize("...!?"), "");
    assert_eq!(normalize("don\u{2019}t"), "dont");
}

#[test]
fn words_outside_ascii_are_matched_by_spelling_without_a_panic() {
    // Phrases and transcripts in other scripts, and English with accents: Double Metaphone
    // (byte offsets) panicked on the Arabic letter inside "somethingؚlse".
    let m = Matcher::new(
        vec![
            Candidate {
                intent: "other".into(),
                phrases: vec!["no thanks, somethingؚlse".into()],
            },
            Candidate {
                intent: "cafe".into(),
                phrases: vec!["the café menu".into()],
            },
            Candidate {
                intent: "russian".into(),
                phrases: vec!["поддержка".into()],
            },
        ],
        vec![],
    );
    for heard in [
        "somethingؚlse",
        "café",
        "поддержка пожалуйста",
        "naïve",
        "ß ǅ ﬁ İ",
    ] {
        let _ = m.score(heard);
    }
    assert_eq!(
        m.score("the café menu please").best.map(|b| b.0),
        Some("cafe".into())
    );
    assert_eq!(
        m.score("поддержка").best.map(|b| b.0),
        Some("russian".into())
    );
}

#[test]
fn transcripts_route_as_expected() {
    let m = support_line();
    // (transcript, expected route at min_confidence 0.6). Includes real near-misses of
    // Whisper on espeak telephone audio.
    let cases = [
        ("My bill.", "billing"),
        ("Billing.", "billing"),
        // "meal" sounds like "bill" (ML / PL, lips): just enough, as no other intent
        // comes close.
        ("I want to talk about my meal.", "billing"),
        ("Feeling.", "billing"),
        ("Uh, I think it's about my bill, please.", "billing"),
        ("I have a question about a charge on my card", "billing"),
        ("Invoices", "billing"),
        ("I'd like a refund", "billing"),
        ("My internet is down.", "support"),
        ("The internet isn't working", "support"),
        ("Technical support, please.", "support"),
        ("Tech support", "support"),
        ("I have no service", "support"),
        ("When are you open?", "hours"),
        ("What are your opening hours?", "hours"),
        ("When do you open tomorrow", "hours"),
        ("I'd like to speak to a supervisor.", "escalation"),
        ("Super visor", "escalation"),
        ("Can I talk to a real person", "escalation"),
        ("Operator!", "escalation"),
        ("Agent.", "escalation"),
        ("Let me speak to your manager", "escalation"),
        ("I need to talk to a person about my bill", "escalation"),
        // "someone" is deliberately not an escalation phrase: "someone charged my card".
        ("Someone charged my card twice, it's on my bill", "billing"),
        // "I can't" merged is "icant", which sounds like "agent" (AKNT) to Double
        // Metaphone; the spelling is too different for that to count.
        ("I cannot run my bill,", "billing"),
        ("What's the weather like today?", "no_match"),
        ("", "no_match"),
        ("Thank you.", "no_match"),
        ("you", "no_match"),
        ("Billing and technical support", "low_confidence(billing)"),
    ];
    let mut failures = Vec::new();
    println!("| transcript | route | best | escalation |");
    for (text, want) in cases {
        let r = m.score(text);
        let got = route(&m, text);
        println!(
            "| {text:?} | {got} | {:?} | {:.2} |",
            r.best.as_ref().map(|(i, c)| format!("{i} {c:.2}")),
            r.escalation_score
        );
        if got != want {
            failures.push(format!("{text:?}: want {want}, got {got} ({r:?})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_verbatim_phrase_scores_one_and_containment_is_found() {
    let m = support_line();
    let r = m.score("no service");
    assert_eq!(r.best, Some(("support".into(), 1.0)));
    let r = m.score("hello yes so my internet is down since this morning");
    assert_eq!(r.best.as_ref().map(|b| b.0.as_str()), Some("support"));
    assert!(r.best.unwrap().1 >= 0.9);
}

#[test]
fn near_ties_get_low_confidence() {
    let m = support_line();
    let (_, tie) = m.score("billing or technical support").best.unwrap();
    let (_, clear) = m.score("technical support").best.unwrap();
    assert!(tie < 0.6 && clear > 0.9, "tie {tie}, clear {clear}");
}

#[test]
fn unrelated_speech_scores_low() {
    let m = support_line();
    for text in [
        "the quick brown fox jumps over the lazy dog",
        "Thanks for watching!",
        "I like turtles",
        "mmm",
        "🙂",
        "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
    ] {
        let r = m.score(text);
        assert!(!r.escalation, "{text}");
        assert!(
            r.best.as_ref().is_none_or(|(_, c)| *c < 0.6),
            "{text}: {r:?}"
        );
    }
}

#[test]
fn long_and_odd_input_does_not_panic() {
    let m = support_line();
    let long = "bill ".repeat(2000);
    assert_eq!(m.score(&long).best.unwrap().0, "billing");
    let _ = m.score("\u{0}\u{FFFF}\t\n");
    let empty = Matcher::new(vec![], vec![]);
    assert_eq!(empty.score("billing").best, None);
    assert!(!empty.score("billing").escalation);
    assert_eq!(empty.initial_prompt(), "");
}

#[test]
fn initial_prompt_lists_each_phrase_once() {
    let m = Matcher::new(
        vec![
            Candidate {
                intent: "a".into(),
                phrases: vec!["Billing".into(), "my bill".into()],
            },
            Candidate {
                intent: "b".into(),
                phrases: vec!["billing".into(), "support".into()],
            },
        ],
        vec!["supervisor".into()],
    );
    assert_eq!(m.initial_prompt(), "Billing, my bill, support, supervisor.");
    assert_eq!(m.phrases().len(), 4);
}

#[test]
fn collisions_are_reported() {
    let c = |intent: &str, phrases: &[&str]| Candidate {
        intent: intent.into(),
        phrases: phrases.iter().map(|p| p.to_string()).collect(),
    };
    let problems = collisions(&[
        c("billing", &["my bill", "payments", "Support!"]),
        c("support", &["support", "tech support"]),
        c("sales", &["payment", "  "]),
    ]);
    let text = problems.join("\n");
    assert!(
        text.contains("phrase 'support' is in both intent 'billing' and intent 'support'"),
        "{text}"
    );
    assert!(
        text.contains("'payments' of intent 'billing' and phrase 'payment' of intent 'sales'"),
        "{text}"
    );
    assert!(text.contains("phrase '  ' has no words"), "{text}");
    // "tech support" contains billing's "Support!".
    assert!(
        text.contains("'tech support' of intent 'support'")
            || text.contains("'Support!' of intent 'billing' and phrase 'tech support'"),
        "{text}"
    );
    assert!(!text.contains("my bill"), "{text}");

    // The proposed default lists are clean.
    let m = support_line();
    let mut by_intent: Vec<Candidate> = Vec::new();
    for (intent, phrase) in m.phrases() {
        match by_intent.iter_mut().find(|c| &c.intent == intent) {
            Some(c) => c.phrases.push(phrase.clone()),
            None => by_intent.push(Candidate {
                intent: intent.clone(),
                phrases: vec![phrase.clone()],
            }),
        }
    }
    assert_eq!(collisions(&by_intent), Vec::<String>::new());
}

/// A stand-in for the sentence-embedding model: each word lands on a dimension chosen by
/// hand (synonyms share one), so tests control similarity exactly.
struct FakeEmbedder;

impl TextEmbedder for FakeEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        const DIMS: &[&[&str]] = &[
            &[
                "bill", "billing", "invoice", "charged", "charge", "payment", "refund", "money",
            ],
            &[
                "internet",
                "wifi",
                "router",
                "service",
                "working",
                "technical",
                "support",
            ],
            &["hours", "open", "close", "opening", "time"],
            &[
                "person",
                "human",
                "someone",
                "supervisor",
                "operator",
                "manager",
                "agent",
            ],
            &[
                "hello", "um", "uh", "hmm", "okay", "what", "sorry", "thank", "goodbye", "wait",
            ],
            &["yes", "yeah", "yep", "correct", "right", "sure", "exactly"],
            &["no", "nope", "wrong", "not"],
            &["cancel", "account", "contract", "terminate", "quit"],
        ];
        Ok(texts
            .iter()
            .map(|t| {
                // Words of no dimension say nothing; a text of only such words is
                // "something else" (the last dimension).
                let mut v = vec![0.0f32; DIMS.len() + 1];
                for w in normalize(t).split(' ').filter(|w| !w.is_empty()) {
                    if let Some(d) = DIMS.iter().position(|d| d.contains(&w)) {
                        v[d] += 1.0;
                    }
                }
                if v.iter().all(|x| *x == 0.0) {
                    v[DIMS.len()] = 1.0;
                }
                crate::asr::embed::normalize(&mut v);
                v
            })
            .collect())
    }
}

fn semantic_menu() -> Matcher {
    support_line().with_semantic(&FakeEmbedder).expect("embed")
}

fn heard(text: &str) -> Heard {
    Heard {
        text: text.into(),
        closed: None,
        embedding: Some(FakeEmbedder.embed(&[text]).unwrap().remove(0)),
    }
}

#[test]
fn meaning_routes_paraphrases_that_share_no_phrase_word() {
    let m = semantic_menu();
    // No phrase of the menu in it, but its meaning is billing's.
    let r = m.score_heard(&heard("you took too much money from my card"));
    assert_eq!(
        r.best.as_ref().map(|b| b.0.as_str()),
        Some("billing"),
        "{r:?}"
    );
    assert!(r.best.unwrap().1 >= 0.6);
    // By words alone the same sentence routes nowhere.
    assert!(m
        .score("you took too much money from my card")
        .best
        .is_none());
    // Closer to the out-of-scope anchors than to any intent: nothing.
    let r = m.score_heard(&heard("sorry, what?"));
    assert!(r.best.is_none() || r.best.unwrap().1 < 0.35);
    // Asking for a person in other words escalates.
    assert!(m.score_heard(&heard("let me talk to someone")).escalation);
    // Keyword hits still route whatever the embedding says (the lexical first pass).
    let r = m.score_all(
        "my bill",
        None,
        Some(&FakeEmbedder.embed(&["hours"]).unwrap()[0]),
    );
    assert_eq!(r.best.unwrap().0, "billing");
}

#[test]
fn confidence_is_calibrated_and_monotonic() {
    // More similar, a wider margin, better words, more closed-set mass: more confident.
    let base = confidence(0.4, 0.1, 0.3, 0.0);
    assert!(confidence(0.5, 0.1, 0.3, 0.0) > base);
    assert!(confidence(0.4, 0.2, 0.3, 0.0) > base);
    assert!(confidence(0.4, 0.1, 0.6, 0.0) > base);
    assert!(confidence(0.4, 0.1, 0.3, 0.5) > base);
    // An unrelated utterance (low similarity, behind a competitor) is far below any
    // sensible min_confidence; a close paraphrase well ahead is far above.
    assert!(confidence(0.15, -0.1, 0.0, 0.0) < 0.1);
    assert!(confidence(0.7, 0.3, 0.0, 0.0) > 0.8);
    assert!((0.0..=1.0).contains(&confidence(f32::MAX, 1.0, 1.0, 1.0)));
}

#[test]
fn fillers_never_route_even_with_closed_set_mass() {
    let m = support_line();
    // The decoder's closed set can give mass to a phrase for a mumble; a transcript of
    // hesitations only never routes.
    let closed = vec![0.9; m.closed_set().len()];
    for filler in ["Um.", "Hello?", "uh, hmm", "Okay.", "Is anyone there?"] {
        let r = m.score_with(filler, Some(&closed));
        assert!(r.best.is_none() && !r.escalation, "{filler}: {r:?}");
    }
    // Yes and no are answers in a confirmation turn, not fillers.
    let yn = Matcher::yes_no(vec!["operator".into()]);
    assert_eq!(yn.score("Yes.").best.unwrap().0, YES);
    assert_eq!(yn.score("No.").best.unwrap().0, NO);
    assert!(yn.score("operator please").escalation);
}

#[test]
fn confusable_intents_are_reported() {
    let c = |intent: &str, phrases: &[&str]| Candidate {
        intent: intent.into(),
        phrases: phrases.iter().map(|p| p.to_string()).collect(),
    };
    let close = Matcher::new(
        vec![c("billing", &["my bill"]), c("payments", &["a payment"])],
        vec![],
    )
    .with_semantic(&FakeEmbedder)
    .unwrap();
    let problems = close.confusable();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("'billing' and 'payments' are confusable"),
        "{problems:?}"
    );
    assert!(semantic_menu().confusable().is_empty());
    // Without embeddings there is nothing to compare.
    assert!(support_line().confusable().is_empty());
}
