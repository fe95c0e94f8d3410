use super::*;
use crate::data::DataSource;
use std::path::PathBuf;

fn mirror() -> Option<DataSource> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/hub"));
    if p.is_dir() {
        Some(DataSource::mirror_only(p))
    } else {
        eprintln!("note: {} absent, skipping", p.display());
        None
    }
}

fn reference(name: &str) -> Option<Vec<Value>> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/lm-eval-f32"
    ))
    .join(format!("{name}.jsonl"));
    let Ok(s) = std::fs::read_to_string(&p) else {
        eprintln!("note: {} absent, skipping", p.display());
        return None;
    };
    Some(
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn ref_requests(r: &Value) -> Vec<LoglikRequest> {
    r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| LoglikRequest {
            context: q["context"].as_str().unwrap().into(),
            continuation: q["continuation"].as_str().unwrap().into(),
        })
        .collect()
}

fn ref_lls(r: &Value) -> Vec<Loglik> {
    r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| Loglik {
            logprob: q["loglik"].as_f64().unwrap(),
            is_greedy: q["is_greedy"].as_bool().unwrap(),
            logprob_f64: None,
        })
        .collect()
}

/// Requests, target and per-doc metrics of the first 40 docs equal lm-eval's.
fn check_against_reference(task: &str) {
    let (Some(data), Some(refs)) = (mirror(), reference(task)) else {
        return;
    };
    let reg = Registry::builtin().unwrap();
    let t = reg.task(task).unwrap();
    let docs = t.load_docs(&data, Some(40)).unwrap();
    assert_eq!(docs.len(), 40);
    let mut hash_ok = 0;
    for (doc, r) in docs.iter().zip(&refs) {
        assert_eq!(doc.id as u64, r["doc_id"].as_u64().unwrap());
        assert_eq!(doc.requests, ref_requests(r), "{task} doc {}", doc.id);
        assert_eq!(
            doc.target,
            r["target"].as_str().unwrap(),
            "{task} doc {} target",
            doc.id
        );
        let m = t.process_results(doc, &ref_lls(r), None).unwrap();
        for (k, v) in r["metrics"].as_object().unwrap() {
            assert_eq!(m[k], v.as_f64().unwrap(), "{task} doc {} {k}", doc.id);
        }
        if crate::report::doc_hash(&doc.row) == r["doc_hash"].as_str().unwrap() {
            hash_ok += 1;
        }
    }
    eprintln!("{task}: doc_hash equal to lm-eval's for {hash_ok}/40 docs");
    assert_eq!(hash_ok, 40, "{task}: doc_hash");
}

#[test]
fn ref_arc_easy() {
    check_against_reference("arc_easy");
}
#[test]
fn ref_arc_challenge() {
    check_against_reference("arc_challenge");
}
#[test]
fn ref_boolq() {
    check_against_reference("boolq");
}
#[test]
fn ref_hellaswag() {
    check_against_reference("hellaswag");
}
#[test]
fn ref_openbookqa() {
    check_against_reference("openbookqa");
}
#[test]
fn ref_piqa() {
    check_against_reference("piqa");
}
#[test]
fn ref_winogrande() {
    check_against_reference("winogrande");
}

#[test]
fn ref_truthfulqa_mc1_mc2() {
    let (Some(data), Some(r1), Some(r2)) = (
        mirror(),
        reference("truthfulqa_mc1"),
        reference("truthfulqa_mc2"),
    ) else {
        return;
    };
    let reg = Registry::builtin().unwrap();
    let t = reg.task("truthfulqa_mc").unwrap();
    let docs = t.load_docs(&data, Some(40)).unwrap();
    for ((doc, a), b) in docs.iter().zip(&r1).zip(&r2) {
        let (q1, q2) = (ref_requests(a), ref_requests(b));
        assert_eq!(doc.requests[..q1.len()], q1[..], "doc {}", doc.id);
        assert_eq!(doc.requests[q1.len()..], q2[..], "doc {}", doc.id);
        let mut lls = ref_lls(a);
        lls.extend(ref_lls(b));
        let m = t.process_results(doc, &lls, None).unwrap();
        assert_eq!(
            m["mc1"],
            a["metrics"]["acc"].as_f64().unwrap(),
            "doc {} mc1",
            doc.id
        );
        let want = b["metrics"]["acc"].as_f64().unwrap();
        // The reference mc2 values were computed from logliks that differ from the logged ones in
        // the last bits (doc 25: Python on the logged values gives ...348937, the file ...538985).
        assert!(
            (m["mc2"] - want).abs() <= 1e-9 * want.abs().max(1e-300),
            "doc {} mc2 {} vs {want}",
            doc.id,
            m["mc2"]
        );
    }
}

#[test]
fn hellaswag_cleanup() {
    assert_eq!(
        hellaswag_preprocess(" Making a cake: [header] How to bake [title] Mix it.  Then  "),
        "Making a cake: How to bake. Mix it. Then"
    );
    let row = serde_json::json!({"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "endings": ["is using wrap [step] to wrap.", "x"], "label": "3"});
    let out = preprocess_hellaswag(row).unwrap();
    assert_eq!(
        out["query"],
        "Roof shingle removal: A man is sitting on a roof. He"
    );
    assert_eq!(out["choices"][0], "is using wrap to wrap.");
    assert_eq!(out["gold"], 3);
}

#[test]
fn winogrande_partial_requests() {
    let row = serde_json::json!({"sentence": "Sarah was a better surgeon than Maria so _ got  the easy cases. ", "option1": "Sarah", "option2": "Maria", "answer": "2"});
    let (reqs, target) = winogrande_requests(&row, &["Sarah".into(), "Maria".into()]).unwrap();
    assert_eq!(target, "got  the easy cases.");
    assert_eq!(
        reqs[0].context,
        "Sarah was a better surgeon than Maria so Sarah"
    );
    assert_eq!(
        reqs[1].context,
        "Sarah was a better surgeon than Maria so Maria"
    );
    assert_eq!(reqs[1].continuation, " got  the easy cases.");
}

#[test]
fn boolq_tie_predicts_no() {
    let reg = Registry::builtin().unwrap();
    let t = reg.task("boolq").unwrap();
    let row = serde_json::json!({"passage": "p", "question": "q", "label": 1});
    let doc = t.build_doc(0, row).unwrap();
    assert_eq!(doc.requests[0].continuation, " no");
    assert_eq!(doc.requests[1].context, "p\nQuestion: q?\nAnswer:");
    let ll = |a: f64, b: f64| {
        vec![
            Loglik {
                logprob: a,
                is_greedy: false,
                logprob_f64: None,
            },
            Loglik {
                logprob: b,
                is_greedy: false,
                logprob_f64: None,
            },
        ]
    };
    assert_eq!(
        t.process_results(&doc, &ll(-1.0, -1.0), None).unwrap()["acc"],
        0.0
    );
    assert_eq!(
        t.process_results(&doc, &ll(-1.0, -0.9), None).unwrap()["acc"],
        1.0
    );
}

#[test]
fn builtin_registry_is_valid() {
    assert_eq!(validate(None).unwrap(), Vec::<String>::new());
    let reg = Registry::builtin().unwrap();
    // 34 log-likelihood tasks of the four card suites + 21 chat tasks (function calling, BFCL,
    // JSON mode, JSONSchemaBench) + IFEval
    assert_eq!(reg.tasks().count(), 56);
    assert_eq!(reg.resolve(Some("fc"), &[]).unwrap().len(), 2);
    assert_eq!(reg.resolve(Some("bfcl"), &[]).unwrap().len(), 13);
    let g = reg.resolve(Some("gpt4all"), &[]).unwrap();
    let names: Vec<&str> = g.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "arc_challenge",
            "arc_easy",
            "boolq",
            "hellaswag",
            "openbookqa",
            "piqa",
            "winogrande"
        ]
    );
    assert_eq!(reg.resolve(Some("nous"), &[]).unwrap().len(), 34);
    assert_eq!(reg.resolve(None, &["bigbench_*".into()]).unwrap().len(), 18);
    assert!(reg.resolve(None, &["nope".into()]).is_err());
    let listing = reg.listing();
    assert!(listing.contains("bigbench_tracking_shuffled_objects_three_objects"));
    assert!(listing.contains("byte-identical to logical_deduction_three_objects"));
    // from_dir on the source tree gives the same tasks.
    let dir = Registry::from_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tasks"))).unwrap();
    assert_eq!(dir.tasks().count(), 56);
    assert_eq!(
        dir.task("boolq").unwrap().hash(),
        reg.task("boolq").unwrap().hash()
    );
}

#[test]
fn unknown_key_is_one_line_error() {
    let src = BUILTIN_TASK_FILES
        .iter()
        .find(|f| f.0 == "arc_easy")
        .unwrap()
        .1
        .to_string()
        + "\nprompt = \"x\"\n";
    let e = Task::from_toml(&src, "tasks/arc_easy.toml")
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.starts_with("tasks/arc_easy.toml:") && e.contains("prompt"),
        "{e}"
    );
    let bad = src
        .replace("\nprompt = \"x\"\n", "")
        .replace("scorer", "x")
        .replace("metrics = [\"acc\", \"acc_norm\"]", "metrics = [\"mc9\"]");
    let e = Task::from_toml(&bad, "t.toml").unwrap_err().to_string();
    assert!(e.contains("no metric `mc9`") && !e.contains('\n'), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), &src).unwrap();
    std::fs::write(dir.path().join("b.toml"), "name = 3").unwrap();
    let errs = validate(Some(dir.path())).unwrap();
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn agieval_prompt_shape() {
    let Some(data) = mirror() else { return };
    let reg = Registry::builtin().unwrap();
    for t in reg.resolve(Some("agieval"), &[]).unwrap() {
        let docs = t.load_docs(&data, None).unwrap();
        assert_eq!(Some(docs.len()), t.def.n, "{}", t.name);
        let d = &docs[0];
        assert!(
            d.requests[0].context.contains("Answer Choices: "),
            "{}",
            t.name
        );
        assert!(
            d.requests[0].context.ends_with(", the answer is"),
            "{}",
            t.name
        );
        assert!(d.requests[0].continuation.starts_with(" (A)"), "{}", t.name);
        assert_eq!(d.requests[0].continuation, format!(" {}", d.choices[0]));
    }
}

#[test]
fn bigbench_worked_examples() {
    let Some(data) = mirror() else { return };
    let reg = Registry::builtin().unwrap();
    let ts = reg.resolve(Some("bigbench"), &[]).unwrap();
    assert_eq!(ts.len(), 18);
    for t in &ts {
        let docs = t.load_docs(&data, None).unwrap();
        assert_eq!(Some(docs.len()), t.def.n, "{}", t.name);
    }
    let first = |n: &str| {
        reg.task(n)
            .unwrap()
            .load_docs(&data, Some(1))
            .unwrap()
            .remove(0)
    };
    let split = |d: &Doc, i: usize| {
        crate::py::text::split_trailing_whitespace(
            &d.requests[i].context,
            &d.requests[i].continuation,
        )
    };
    let d = first("bigbench_date_understanding");
    let (c, k) = split(&d, 0);
    assert_eq!(
        c,
        "\nQ: Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?\nA:"
    );
    assert_eq!(k, " 05/01/2021");
    assert_eq!(split(&d, 1).1, " 02/23/2021");
    let d = first("bigbench_ruin_names");
    assert!(d.requests[0].context.contains("\n  choice: stare wars\n  choice: stars wars\n  choice: star was\n  choice: stariwars\nA: "), "{:?}", d.requests[0].context);
    let d = first("bigbench_movie_recommendation");
    let (c, k) = split(&d, 0);
    assert!(c.ends_with("\n  choice: In Cold Blood"), "{c:?}");
    assert_eq!(k, "\nAustin Powers International Man of Mystery");
    let d = first("bigbench_salient_translation_error_detection");
    let (c, k) = split(&d, 0);
    assert!(c.ends_with("pertaining to"), "{c:?}");
    assert!(
        d.requests
            .iter()
            .any(
                |r| crate::py::text::split_trailing_whitespace(&r.context, &r.continuation).1
                    == " \nModifiers or Adjectives"
            ),
        "{k:?}"
    );
    let d = first("bigbench_tracking_shuffled_objects_five_objects");
    let (c, k) = split(&d, 0);
    assert!(
        c.ends_with("At the end of the game, Alice has the"),
        "{c:?}"
    );
    assert!(k.starts_with(' ') && k.ends_with(" ball."), "{k:?}");
    let d = first("bigbench_geometric_shapes");
    let (c, k) = split(&d, 0);
    assert!(
        c.starts_with("\nQ: This SVG path element <path d=\"")
            && c.ends_with("\n  choice: pentagon\nA:"),
        "{c:?}"
    );
    assert_eq!(k, " circle");
    let g = d.generation.as_ref().unwrap();
    assert!(g.context.ends_with("\nA: ") && g.max_new_tokens == 128 && g.until.is_empty());
    // exact_str_match postprocess: first 128 chars, first run outside . ? ! ; \n
    let t = reg.task("bigbench_geometric_shapes").unwrap();
    let lls: Vec<Loglik> = (0..d.requests.len())
        .map(|i| Loglik {
            logprob: -(i as f64) - 1.0,
            is_greedy: false,
            logprob_f64: None,
        })
        .collect();
    let m = t
        .process_results(&d, &lls, Some(&format!("{}.\nmore", d.target)))
        .unwrap();
    assert_eq!(m["exact_str_match"], 1.0);
    assert_eq!(
        m["multiple_choice_grade"],
        d.row["multiple_choice_scores"][0].as_f64().unwrap()
    );
    let m = t
        .process_results(&d, &lls, Some(&format!(" {}", d.target)))
        .unwrap();
    assert_eq!(m["exact_str_match"], 0.0);
    // The three_objects quirk: identical docs.
    let a = reg
        .task("bigbench_logical_deduction_three_objects")
        .unwrap()
        .load_docs(&data, None)
        .unwrap();
    let b = reg
        .task("bigbench_tracking_shuffled_objects_three_objects")
        .unwrap()
        .load_docs(&data, None)
        .unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.requests == y.requests));
}

#[test]
fn every_task_file_is_built_in() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tasks"));
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(".toml")
                .filter(|s| *s != "suites")
                .map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut built: Vec<String> = BUILTIN_TASK_FILES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    built.sort();
    assert_eq!(built, on_disk, "src/tasks/builtins.rs is out of date");
}

#[test]
fn include_takes_the_other_task_and_overrides_key_by_key() {
    let files = vec![
        (
            "a.toml".to_string(),
            BUILTIN_TASK_FILES
                .iter()
                .find(|(n, _)| *n == "arc_easy")
                .unwrap()
                .1
                .to_string(),
        ),
        (
            "b.toml".to_string(),
            "include = \"arc_easy\"\nname = \"arc_x\"\ndataset = { config = \"ARC-Challenge\" }\n"
                .to_string(),
        ),
    ];
    let reg = Registry::from_sources(&files, None).unwrap();
    let t = reg.task("arc_x").unwrap();
    assert_eq!(t.def.dataset.path, "allenai/ai2_arc");
    assert_eq!(t.def.dataset.config, "ARC-Challenge");
    assert_eq!(t.def.dataset.split, "test");
    assert_eq!(t.def.context, reg.task("arc_easy").unwrap().def.context);
    // an include of an unknown task, or a cycle, is a one-line error
    let bad = vec![(
        "c.toml".to_string(),
        "include = \"nope\"\nname = \"c\"\n".to_string(),
    )];
    let e = Registry::from_sources(&bad, None).unwrap_err().to_string();
    assert!(e.contains("unknown task `nope`"), "{e}");
    let cyc = vec![
        (
            "x.toml".to_string(),
            "include = \"y\"\nname = \"x\"\n".to_string(),
        ),
        (
            "y.toml".to_string(),
            "include = \"x\"\nname = \"y\"\n".to_string(),
        ),
    ];
    let e = Registry::from_sources(&cyc, None).unwrap_err().to_string();
    assert!(e.contains("include cycle"), "{e}");
    // the shipped BFCL and JSONSchemaBench variants are includes
    let reg = Registry::builtin().unwrap();
    let p = reg.task("bfcl_parallel").unwrap();
    assert_eq!(p.def.dataset.config, "parallel");
    assert_eq!(p.def.scorer, "tool_call");
    assert_eq!(p.def.metrics, ["ast_acc"]);
}

#[test]
fn glob_is_linear_not_exponential() {
    assert!(glob_match("agieval_*", "agieval_sat_en"));
    assert!(glob_match("*sat*", "agieval_sat_en"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*", ""));
    assert!(!glob_match("*x", "abc"));
    let evil = format!("{}X", "*?".repeat(40));
    // exponential backtracking would not return from this
    assert!(!glob_match(&evil, &"a".repeat(200)));
}

/// arc_easy.toml with the line that starts with `key` replaced by `line`.
fn arc_easy_with(key: &str, line: &str) -> String {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tasks/arc_easy.toml"))
        .unwrap();
    let bad = src
        .lines()
        .map(|l| if l.starts_with(key) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(bad, src, "the {key} line was replaced");
    bad
}

/// Fuzz reproducers (task_file target): stray braces in an expression made minijinja's lexer
/// panic ("empty lexer stack"): `}}}` in gold (session 6), `choices}}ext` as the choices
/// (session 7). Each is an error naming the expression.
#[test]
fn unbalanced_braces_in_an_expression_are_an_error_not_a_panic() {
    for (key, line, what) in [
        (
            "gold",
            r#"gold = '{"A": 0, "B": 1, "C": 2, "D": 3, "E": 4, "1": 0, "2": 1, "3": 2, "4": 3, "5": 4}}}[answerKey]'"#,
            "gold expression",
        ),
        (
            "choices ",
            r#"choices = "choices}}ext""#,
            "choices expression",
        ),
    ] {
        let Err(e) = Task::from_toml(&arc_easy_with(key, line), "fuzz.toml") else {
            panic!("{what} with unbalanced braces was accepted");
        };
        assert!(e.to_string().contains(what), "{e}");
    }
}
