//! The IFEval judge on hand-written cases: one passing and one failing response per instruction
//! id, loose-only passes, and lm-eval's aggregation computed by hand.
use hermes_eval::ifeval::{checks::INSTRUCTION_IDS, judge, loose_variants, IfevalMetrics};
use serde_json::{json, Value};

fn row(id: &str, kwargs: Value) -> Value {
    json!({"key": 1, "prompt": "Write a poem about cats.", "instruction_id_list": [id], "kwargs": [kwargs]})
}

/// (id, kwargs, passing response, failing response)
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "keywords:existence",
            json!({"keywords": ["moon", "tide"]}),
            "The Moon pulls the tide.",
            "The moon rises.",
        ),
        (
            "keywords:frequency",
            json!({"keyword": "cat", "frequency": 2, "relation": "at least"}),
            "cat and CAT",
            "one cat",
        ),
        (
            "keywords:forbidden_words",
            json!({"forbidden_words": ["red"]}),
            "a reddish sky",
            "a red sky",
        ),
        (
            "keywords:letter_frequency",
            json!({"letter": "z", "let_frequency": 2, "let_relation": "less than"}),
            "zebra",
            "zizz",
        ),
        (
            "language:response_language",
            json!({"language": "fr"}),
            "Le chat dort sur la table de la cuisine.",
            "The cat sleeps on the kitchen table.",
        ),
        (
            "length_constraints:number_sentences",
            json!({"num_sentences": 2, "relation": "less than"}),
            "Dr. Smith left.",
            "One. Two.",
        ),
        (
            "length_constraints:number_paragraphs",
            json!({"num_paragraphs": 2}),
            "one\n***\ntwo",
            "one\n***\n\n***\ntwo",
        ),
        (
            "length_constraints:number_words",
            json!({"num_words": 3, "relation": "at least"}),
            "one two three",
            "one two",
        ),
        (
            "length_constraints:nth_paragraph_first_word",
            json!({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "cats"}),
            "Intro.\n\n\"Cats,\" she said.",
            "Intro.\n\nDogs.",
        ),
        (
            "detectable_content:number_placeholders",
            json!({"num_placeholders": 2}),
            "[name] at [place]",
            "[name]",
        ),
        (
            "detectable_content:postscript",
            json!({"postscript_marker": "P.S."}),
            "Hi.\nP.S. bye",
            "Hi. PS bye",
        ),
        (
            "detectable_format:number_bullet_lists",
            json!({"num_bullets": 2}),
            "* a\n- b",
            "* a\n* b\n* c",
        ),
        (
            "detectable_format:constrained_response",
            json!({}),
            "My answer is no.",
            "No.",
        ),
        (
            "detectable_format:number_highlighted_sections",
            json!({"num_highlights": 2}),
            "*one* and **two**",
            "*one* and * *",
        ),
        (
            "detectable_format:multiple_sections",
            json!({"section_spliter": "SECTION", "num_sections": 2}),
            "SECTION 1\na\nSECTION 2\nb",
            "SECTION 1\na",
        ),
        (
            "detectable_format:json_format",
            json!({}),
            "```json\n{\"a\": NaN}\n```",
            "{'a': 1}",
        ),
        (
            "detectable_format:title",
            json!({}),
            "<<Cats>>\ntext",
            "<<  >>\ntext",
        ),
        (
            "combination:two_responses",
            json!({}),
            "A\n******\nB",
            "A\n******\nA",
        ),
        (
            "combination:repeat_prompt",
            json!({"prompt_to_repeat": "Write a poem about cats."}),
            "write a poem about cats. Meow.",
            "Meow.",
        ),
        (
            "startend:end_checker",
            json!({"end_phrase": "Any other questions?"}),
            "Done. any other questions?\"",
            "Any other questions? No.",
        ),
        (
            "change_case:capital_word_frequency",
            json!({"capital_frequency": 2, "capital_relation": "at least"}),
            "I CAN'T stop",
            "NASA only",
        ),
        (
            "change_case:english_capital",
            json!({}),
            "THE CAT SLEEPS ON THE MAT ALL DAY LONG.",
            "The cat sleeps on the mat.",
        ),
        (
            "change_case:english_lowercase",
            json!({}),
            "the cat sleeps on the mat all day long.",
            "The cat sleeps on the mat.",
        ),
        (
            "punctuation:no_comma",
            json!({}),
            "no commas here",
            "one, two",
        ),
        ("startend:quotation", json!({}), "  \"quoted\" ", "\"half"),
    ]
}

#[test]
fn every_instruction_passes_and_fails() {
    let cs = cases();
    for id in INSTRUCTION_IDS {
        assert!(cs.iter().any(|c| c.0 == id), "no case for {id}");
    }
    for (id, kw, pass, fail) in cs {
        let v = judge(&row(id, kw.clone()), pass).unwrap();
        assert!(
            v.instructions[0].strict && v.prompt_strict,
            "{id} should pass: {pass:?} ({:?})",
            v.instructions[0].reason
        );
        let v = judge(&row(id, kw), fail).unwrap();
        assert!(!v.instructions[0].strict, "{id} should fail: {fail:?}");
        assert!(
            v.instructions[0].reason.is_some(),
            "{id}: a failure says why"
        );
        assert!(v.failure().is_some_and(|f| f.0 == id));
    }
}

#[test]
fn loose_variants_and_loose_only_passes() {
    let v = loose_variants("Sure:\n*body*\nThanks");
    assert_eq!(v[0], "Sure:\n*body*\nThanks");
    assert_eq!(v[1], "Sure:\nbody\nThanks");
    assert_eq!(v[2], "*body*\nThanks");
    assert_eq!(v[3], "Sure:\n*body*");
    assert_eq!(v[4], "*body*");
    assert_eq!(&v[5..], ["body\nThanks", "Sure:\nbody", "body"]);
    // First line spoils the quotation; dropping it (loose) fixes it.
    let r = row("startend:quotation", json!({}));
    let v = judge(&r, "Here you go:\n\"quoted\"").unwrap();
    assert!(!v.prompt_strict && v.prompt_loose);
    // Markdown bold spoils the JSON; the `*`-stripped variant passes.
    let v = judge(
        &row("detectable_format:json_format", json!({})),
        "**{\"a\": 1}**",
    )
    .unwrap();
    assert!(!v.instructions[0].strict && v.instructions[0].loose);
    // A trailing sign-off line spoils the end phrase.
    let r = row("startend:end_checker", json!({"end_phrase": "Bye."}));
    assert!(judge(&r, "Text. Bye.\n(end)").unwrap().prompt_loose);
    // Blank responses follow nothing, strictly or loosely.
    let v = judge(&row("punctuation:no_comma", json!({})), "  \n ").unwrap();
    assert!(!v.prompt_strict && !v.prompt_loose);
}

#[test]
fn hub_parquet_kwargs_with_nulls_and_bad_rows() {
    // The hub's parquet rows carry every kwarg key, unused ones null.
    let r = json!({"key": 7, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
                   "kwargs": [{"num_words": 2, "relation": "less than", "keywords": null, "language": null}]});
    assert!(judge(&r, "one").unwrap().prompt_strict);
    let missing = json!({"key": 8, "prompt": "p", "instruction_id_list": ["keywords:frequency"], "kwargs": [{"keyword": "x"}]});
    let e = judge(&missing, "x").unwrap_err().to_string();
    assert!(
        e.contains("keywords:frequency") && e.contains("frequency"),
        "{e}"
    );
    let unknown =
        json!({"key": 9, "prompt": "p", "instruction_id_list": ["nope:nope"], "kwargs": [{}]});
    assert!(judge(&unknown, "x")
        .unwrap_err()
        .to_string()
        .contains("nope:nope"));
}

#[test]
fn metrics_aggregate_as_lm_eval() {
    // Prompt A: 2 instructions, strict [T, F], loose [T, T]; prompt B: 1 instruction, F / F.
    let a = json!({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]});
    let b = json!({"key": 2, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]});
    let va = judge(&a, "Sure\n\"quoted\"").unwrap();
    let vb = judge(&b, "a, b").unwrap();
    assert_eq!(
        va.instructions
            .iter()
            .map(|i| (i.strict, i.loose))
            .collect::<Vec<_>>(),
        [(true, true), (false, true)]
    );
    let m = IfevalMetrics::aggregate(&[va, vb]);
    assert_eq!(m.prompt_level_strict_acc, 0.0);
    assert_eq!(m.prompt_level_loose_acc, 0.5);
    // Instruction level: mean over all 3 instructions, not a mean of per-prompt means.
    assert!((m.inst_level_strict_acc - 1.0 / 3.0).abs() < 1e-12);
    assert!((m.inst_level_loose_acc - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.prompt_level_loose_acc_stderr - 0.5).abs() < 1e-12); // sqrt(0.25·2/1)/sqrt(2)
    assert_eq!((m.prompts, m.instructions), (2, 3));
}
