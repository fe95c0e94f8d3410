//! Oracle runs: feeding each dataset's reference answers as the model output scores 100 %.
mod fc_common;
use fc_common::*;
use hermes_eval::chat::ChatTemplate;
use hermes_eval::fc::data::{self, FcTarget, JsonEvalKind};
use hermes_eval::fc::pyeq::{py_json_dumps, py_repr, PyValue};
use hermes_eval::fc::{run_fc, run_json, FailureReason, FcOptions, ParserMode, SchemaOrder};

fn tool_call_text(calls: &[PyValue]) -> String {
    calls
        .iter()
        .map(|c| format!("<tool_call>\n{}\n</tool_call>", py_json_dumps(c)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn nous_fc_fixture_oracle_scores_100() {
    let rows = data::read_rows(&fixture("func_calling_eval.jsonl")).unwrap();
    let samples = data::fc_samples_from_nous_rows(&rows, SchemaOrder::V1).unwrap();
    let replies: Vec<String> = samples
        .iter()
        .map(|s| match &s.target {
            FcTarget::Nous { expected, .. } => tool_call_text(expected),
            _ => unreachable!(),
        })
        .collect();
    let mut model = ScriptedModel::new(replies);
    let chat = ChatTemplate::chatml("<|im_end|>");
    let mut seen = Vec::new();
    let opts = FcOptions {
        batch_size: 3,
        ..FcOptions::default()
    };
    let rep = run_fc(&mut model, &chat, &samples, &opts, |d, t| seen.push((d, t))).unwrap();
    assert_eq!(rep.passed, samples.len(), "{}", rep.samples_jsonl());
    assert_eq!(rep.pass_rate, 1.0);
    assert_eq!(rep.lenient, 0);
    assert_eq!(seen.last(), Some(&(samples.len(), samples.len())));
    assert!(rep.summary_markdown().contains("100.00%"));
    // The prompt the model saw is the ChatML rendering of system + user.
    let p0 = model.tok.decode(&model.prompts_seen[0], false).unwrap();
    assert!(p0.starts_with("<|im_start|>system\nYou are a function calling AI model."));
    assert!(p0.ends_with("<|im_end|>\n<|im_start|>assistant\n"));
}

#[test]
fn nous_fc_python_literal_replies_pass_and_count_as_lenient() {
    let rows = data::read_rows(&fixture("func_calling_eval.jsonl")).unwrap();
    let samples = data::fc_samples_from_nous_rows(&rows, SchemaOrder::V1).unwrap();
    let replies: Vec<String> = samples
        .iter()
        .map(|s| match &s.target {
            FcTarget::Nous { expected, .. } => expected
                .iter()
                .map(|c| format!("<tool_call>\n{}\n</tool_call>", py_repr(c)))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => unreachable!(),
        })
        .collect();
    let mut model = ScriptedModel::new(replies);
    let rep = run_fc(
        &mut model,
        &ChatTemplate::chatml("<|im_end|>"),
        &samples,
        &FcOptions::default(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(rep.passed, samples.len(), "{}", rep.samples_jsonl());
    assert_eq!(rep.lenient, samples.len());
    // The later regex parser (json.loads only) rejects the same replies.
    let mut model = ScriptedModel::new(
        samples
            .iter()
            .map(|s| match &s.target {
                FcTarget::Nous { expected, .. } => {
                    format!("<tool_call>\n{}\n</tool_call>", py_repr(&expected[0]))
                }
                _ => unreachable!(),
            })
            .collect(),
    );
    let opts = FcOptions {
        parser: ParserMode::Regex,
        ..FcOptions::default()
    };
    let rep = run_fc(
        &mut model,
        &ChatTemplate::chatml("<|im_end|>"),
        &samples,
        &opts,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(rep.passed, 0);
    assert_eq!(
        rep.failure_reasons.get(&FailureReason::MalformedJson),
        Some(&samples.len())
    );
}

#[test]
fn nous_json_mode_fixture_oracle_scores_100() {
    let rows = data::read_rows(&fixture("json_mode_eval.jsonl")).unwrap();
    let samples = data::json_samples_from_nous_rows(&rows).unwrap();
    let replies = rows
        .iter()
        .map(|r| r["completion"].as_str().unwrap().to_string())
        .collect();
    let mut model = ScriptedModel::new(replies);
    let rep = run_json(
        &mut model,
        &ChatTemplate::chatml("<|im_end|>"),
        &samples,
        JsonEvalKind::JsonModeEval,
        &FcOptions::default(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(rep.passed, samples.len(), "{}", rep.samples_jsonl());
    assert_eq!(rep.metric, "json-mode eval (pass@1)");
    assert_eq!(rep.schema_valid, Some(samples.len()));
}

#[test]
fn maskbench_oracle_scores_100() {
    let Some(hub) = hub() else { return };
    let (name, kind, samples) = data::load_json_dataset(data::MASKBENCH, None, &hub).unwrap();
    assert_eq!(kind, JsonEvalKind::MaskbenchSubstitutePrompt);
    assert_eq!(samples.len(), 100, "{name}");
    let replies = samples
        .iter()
        .map(|s| py_json_dumps(s.expected.as_ref().unwrap()))
        .collect();
    let mut model = ScriptedModel::new(replies);
    let rep = run_json(
        &mut model,
        &ChatTemplate::chatml("<|im_end|>"),
        &samples,
        kind,
        &FcOptions {
            batch_size: 16,
            max_new_tokens: 1 << 16,
            ..FcOptions::default()
        },
        |_, _| {},
    )
    .unwrap();
    let fails: Vec<_> = rep
        .records
        .iter()
        .filter(|r| !r.passed)
        .map(|r| (&r.id, &r.failures))
        .collect();
    assert_eq!(rep.passed, 100, "{fails:?}");
    assert!(rep.metric.contains("SUBSTITUTE"));
}

/// Possible answer → one concrete call: the first acceptable value of every argument that is not
/// the "" optional marker (nested dict answers likewise).
fn pick(options: &PyValue) -> Option<PyValue> {
    let PyValue::List(opts) = options else {
        return Some(options.clone());
    };
    opts.iter().find(|o| o.as_str() != Some("")).map(concretize)
}

fn concretize(v: &PyValue) -> PyValue {
    match v {
        PyValue::Dict(d) => PyValue::Dict(
            d.iter()
                .filter_map(|(k, o)| Some((k.clone(), pick(o)?)))
                .collect(),
        ),
        PyValue::List(l) if l.iter().all(|x| matches!(x, PyValue::Dict(_))) && !l.is_empty() => {
            PyValue::List(l.iter().map(concretize).collect())
        }
        o => o.clone(),
    }
}

fn oracle_reply(gt: &[PyValue], functions: &[serde_json::Value]) -> String {
    let calls: Vec<PyValue> = gt
        .iter()
        .map(|a| {
            let (name, args) = a.as_dict().unwrap()[0].clone();
            // Some rows list an optional argument the function doc lacks: leave it out.
            let doc = functions
                .iter()
                .find(|f| f["name"].as_str() == name.as_str());
            let in_doc = |k: &PyValue| {
                doc.is_none_or(|f| {
                    f["parameters"]["properties"]
                        .get(k.as_str().unwrap())
                        .is_some()
                })
            };
            let args = match args {
                PyValue::Dict(d) => PyValue::Dict(
                    d.iter()
                        .filter(|(k, _)| in_doc(k))
                        .filter_map(|(k, o)| Some((k.clone(), pick(o)?)))
                        .collect(),
                ),
                o => o,
            };
            PyValue::Dict(vec![
                (PyValue::Str("name".into()), name),
                (PyValue::Str("arguments".into()), args),
            ])
        })
        .collect();
    tool_call_text(&calls)
}

/// Rows whose possible answer lists no acceptable value for an argument (`"arg": []`, e.g.
/// live_simple_112-68-0) cannot be passed by any output, in gorilla's checker as here.
/// Likewise rows whose answer omits a parameter the doc requires (live_multiple_964-207-0) or
/// requires a parameter the doc lacks (live_multiple_862-181-3).
fn unsatisfiable(gt: &[PyValue], functions: &[serde_json::Value]) -> bool {
    gt.iter().any(|a| {
        let (name, args) = &a.as_dict().unwrap()[0];
        let args = args.as_dict().unwrap();
        let empty = args
            .iter()
            .any(|(_, o)| matches!(o, PyValue::List(l) if l.is_empty()));
        let Some(doc) = functions
            .iter()
            .find(|f| f["name"].as_str() == name.as_str())
        else {
            return true;
        };
        let props = &doc["parameters"]["properties"];
        let optional =
            |o: &PyValue| matches!(o, PyValue::List(l) if l.iter().any(|x| x.as_str() == Some("")));
        let req_missing = doc["parameters"]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                !args
                    .iter()
                    .any(|(k, o)| k.as_str() == r.as_str() && pick(o).is_some())
            });
        let undocumented = args
            .iter()
            .any(|(k, o)| props.get(k.as_str().unwrap()).is_none() && !optional(o));
        empty || req_missing || undocumented
    })
}

#[test]
fn bfcl_oracle_scores_100_in_every_category() {
    let Some(hub) = hub() else { return };
    let cats = [
        "simple",
        "multiple",
        "parallel",
        "parallel_multiple",
        "live_simple",
        "live_multiple",
        "live_parallel",
        "live_parallel_multiple",
        "irrelevance",
        "live_irrelevance",
        "live_relevance",
    ];
    for cat in cats {
        let (task, mut samples) =
            data::load_fc_dataset(data::BFCL, Some(cat), None, &hub, SchemaOrder::V1).unwrap();
        let before = samples.len();
        samples.retain(|s| !matches!(&s.target, FcTarget::Bfcl { ground_truth, functions, .. } if unsatisfiable(ground_truth, functions)));
        assert!(
            (before - samples.len()) * 100 <= before,
            "{task}: {} unsatisfiable rows",
            before - samples.len()
        );
        let replies: Vec<String> = samples
            .iter()
            .map(|s| match &s.target {
                FcTarget::Bfcl {
                    ground_truth,
                    category,
                    ..
                } if category.contains("relevance") && !category.contains("irrelevance") => {
                    // relevance rows have no answer: any call to a listed function counts
                    let FcTarget::Bfcl { functions, .. } = &s.target else {
                        unreachable!()
                    };
                    let _ = ground_truth;
                    format!(
                        "<tool_call>\n{{\"name\": \"{}\", \"arguments\": {{}}}}\n</tool_call>",
                        functions[0]["name"].as_str().unwrap()
                    )
                }
                FcTarget::Bfcl { ground_truth, .. } if ground_truth.is_empty() => {
                    "I cannot help with that.".to_string()
                }
                FcTarget::Bfcl {
                    ground_truth,
                    functions,
                    ..
                } => oracle_reply(ground_truth, functions),
                _ => unreachable!(),
            })
            .collect();
        // JSON-only regex parser: BFCL answers hold `<` and `&`, which the card's XML parser rejects.
        let mut model = ScriptedModel::new(replies.clone());
        let opts = FcOptions {
            parser: ParserMode::Regex,
            batch_size: 64,
            max_new_tokens: 1 << 16,
            ..FcOptions::default()
        };
        let chat = ChatTemplate::chatml("<|im_end|>");
        let rep = hermes_eval::fc::run::run_fc_named(
            &mut model,
            &chat,
            &samples,
            &opts,
            &task,
            |_, _| {},
        )
        .unwrap();
        let fails: Vec<_> = rep
            .records
            .iter()
            .filter(|r| !r.passed)
            .take(3)
            .map(|r| (&r.id, &r.failures, &r.completion))
            .collect();
        assert_eq!(
            rep.passed,
            samples.len(),
            "{task}: {}/{} {fails:#?}",
            rep.passed,
            rep.n
        );
        // XML parser: every failure is an XML well-formedness failure.
        let mut model = ScriptedModel::new(replies);
        let opts = FcOptions {
            parser: ParserMode::Xml,
            batch_size: 64,
            max_new_tokens: 1 << 16,
            ..FcOptions::default()
        };
        let rep = hermes_eval::fc::run::run_fc_named(
            &mut model,
            &chat,
            &samples,
            &opts,
            &task,
            |_, _| {},
        )
        .unwrap();
        for reason in rep.failure_reasons.keys() {
            assert_eq!(*reason, FailureReason::MalformedXml, "{task}");
        }
    }
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    fc: hermes_eval::fc::FcArgs,
}

#[derive(clap::Parser)]
struct JCli {
    #[command(flatten)]
    json: hermes_eval::fc::JsonArgs,
}

#[test]
fn args_resolve_datasets_in_the_mirror() {
    use clap::Parser;
    let Some(hub) = hub() else { return };
    let d = hub.to_str().unwrap();
    let cli = Cli::parse_from([
        "x",
        "--dataset",
        data::BFCL,
        "--data-dir",
        d,
        "--limit",
        "5",
    ]);
    let (task, s) = cli.fc.load_samples().unwrap();
    assert_eq!((task.as_str(), s.len()), ("bfcl_v4_simple_python", 5));
    let cli = Cli::parse_from([
        "x",
        "--dataset",
        data::BFCL,
        "--category",
        "parallel",
        "--bfcl-version",
        "v3-release-70b6a4a2",
        "--data-dir",
        d,
    ]);
    let (task, s) = cli.fc.load_samples().unwrap();
    assert_eq!(task, "bfcl_v3-release-70b6a4a2_parallel");
    assert!(!s.is_empty());
    // the Nous rows are not in the mirror: a clear error, no panic
    let cli = Cli::parse_from(["x", "--data-dir", d]);
    assert!(cli
        .fc
        .load_samples()
        .unwrap_err()
        .to_string()
        .contains("NousResearch/func-calling-eval"));
    let j = JCli::parse_from([
        "x",
        "--dataset",
        data::JSONSCHEMABENCH,
        "--subset",
        "Github_trivial",
        "--data-dir",
        d,
    ]);
    let (task, kind, s) = j.json.load_samples().unwrap();
    assert_eq!(
        (task.as_str(), kind),
        (
            "schema_compliance_Github_trivial",
            JsonEvalKind::SchemaCompliance
        )
    );
    assert!(s.iter().all(|x| x.expected.is_none()) && !s.is_empty());
}
