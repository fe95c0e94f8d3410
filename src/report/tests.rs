use super::*;
use crate::tasks::Registry;

fn r(task: &str, version: u32, n: usize, m: &[(&str, f64, f64)]) -> TaskResult {
    TaskResult {
        task: task.into(),
        version,
        n,
        metrics: m.iter().map(|(a, b, c)| (a.to_string(), *b, *c)).collect(),
    }
}

/// Hermes 2 Pro Mistral 7B card, GPT4All table (TASKS_SPEC §6).
fn gpt4all_card() -> Vec<TaskResult> {
    vec![
        r("winogrande", 0, 1267, &[("acc", 0.7230, 0.0126)]),
        r(
            "arc_challenge",
            0,
            1172,
            &[("acc", 0.5461, 0.0145), ("acc_norm", 0.5623, 0.0145)],
        ),
        r(
            "arc_easy",
            0,
            2376,
            &[("acc", 0.8157, 0.0080), ("acc_norm", 0.7934, 0.0083)],
        ),
        r("boolq", 1, 3270, &[("acc", 0.8688, 0.0059)]),
        r(
            "hellaswag",
            0,
            10042,
            &[("acc", 0.6272, 0.0048), ("acc_norm", 0.8057, 0.0039)],
        ),
        r(
            "openbookqa",
            0,
            500,
            &[("acc", 0.3360, 0.0211), ("acc_norm", 0.4300, 0.0222)],
        ),
        r(
            "piqa",
            0,
            1838,
            &[("acc", 0.7954, 0.0094), ("acc_norm", 0.7998, 0.0093)],
        ),
    ]
}

const GPT4ALL_CARD: &str = "## GPT4All:
```
|    Task     |Version| Metric |Value |   |Stderr|
|-------------|------:|--------|-----:|---|-----:|
|arc_challenge|      0|acc     |0.5461|±  |0.0145|
|             |       |acc_norm|0.5623|±  |0.0145|
|arc_easy     |      0|acc     |0.8157|±  |0.0080|
|             |       |acc_norm|0.7934|±  |0.0083|
|boolq        |      1|acc     |0.8688|±  |0.0059|
|hellaswag    |      0|acc     |0.6272|±  |0.0048|
|             |       |acc_norm|0.8057|±  |0.0039|
|openbookqa   |      0|acc     |0.3360|±  |0.0211|
|             |       |acc_norm|0.4300|±  |0.0222|
|piqa         |      0|acc     |0.7954|±  |0.0094|
|             |       |acc_norm|0.7998|±  |0.0093|
|winogrande   |      0|acc     |0.7230|±  |0.0126|
```
Average: 71.19

";

#[test]
fn card_table_snapshot_gpt4all() {
    let reg = Registry::builtin().unwrap();
    assert_eq!(render_report(&reg, &gpt4all_card()), GPT4ALL_CARD);
}

#[test]
fn card_table_snapshot_truthfulqa_and_bigbench_widths() {
    let t = card_table(&[r(
        "truthfulqa_mc",
        1,
        817,
        &[("mc1", 0.41, 0.0172), ("mc2", 0.5911, 0.0158)],
    )]);
    assert_eq!(
        t,
        "|    Task     |Version|Metric|Value |   |Stderr|\n|-------------|------:|------|-----:|---|-----:|\n|truthfulqa_mc|      1|mc1   |0.4100|±  |0.0172|\n|             |       |mc2   |0.5911|±  |0.0158|\n"
    );
    let t = card_table(&[r(
        "bigbench_tracking_shuffled_objects_three_objects",
        0,
        300,
        &[("multiple_choice_grade", 0.49, 0.0289)],
    )]);
    assert!(t.starts_with("|                      Task                      |Version|       Metric        |Value |   |Stderr|\n|------------------------------------------------|------:|---------------------|-----:|---|-----:|\n"), "{t}");
}

#[test]
fn suite_averages_reproduce_printed_ones() {
    let reg = Registry::builtin().unwrap();
    let g = suite_average(reg.suite("gpt4all").unwrap(), &gpt4all_card()).unwrap();
    assert_eq!(average_line(g), "Average: 71.19");
    // Nous-Hermes-2-Mistral-7B-DPO AGIEval (acc_norm) → 43.63 and BigBench (mcg) → 41.94.
    let agi: Vec<TaskResult> = [
        ("aqua_rat", 0.2283),
        ("logiqa_en", 0.3932),
        ("lsat_ar", 0.2522),
        ("lsat_lr", 0.5137),
        ("lsat_rc", 0.5836),
        ("sat_en", 0.7184),
        ("sat_en_without_passage", 0.4466),
        ("sat_math", 0.3545),
    ]
    .iter()
    .map(|(n, v)| {
        r(
            &format!("agieval_{n}"),
            0,
            100,
            &[("acc", 0.0, 0.0), ("acc_norm", *v, 0.0)],
        )
    })
    .collect();
    assert_eq!(
        average_line(suite_average(reg.suite("agieval").unwrap(), &agi).unwrap()),
        "Average: 43.63"
    );
    let bb: Vec<TaskResult> = [
        ("causal_judgement", 0.5579),
        ("date_understanding", 0.6694),
        ("disambiguation_qa", 0.3333),
        ("geometric_shapes", 0.2061),
        ("logical_deduction_five_objects", 0.3120),
        ("logical_deduction_seven_objects", 0.2114),
        ("logical_deduction_three_objects", 0.4900),
        ("movie_recommendation", 0.3600),
        ("navigate", 0.5000),
        ("reasoning_about_colored_objects", 0.6660),
        ("ruin_names", 0.4420),
        ("salient_translation_error_detection", 0.2766),
        ("snarks", 0.6630),
        ("sports_understanding", 0.6653),
        ("temporal_sequences", 0.3190),
        ("tracking_shuffled_objects_five_objects", 0.2128),
        ("tracking_shuffled_objects_seven_objects", 0.1737),
        ("tracking_shuffled_objects_three_objects", 0.4900),
    ]
    .iter()
    .map(|(n, v)| {
        r(
            &format!("bigbench_{n}"),
            0,
            100,
            &[
                ("multiple_choice_grade", *v, 0.0),
                ("exact_str_match", 0.9, 0.0),
            ],
        )
    })
    .collect();
    assert_eq!(
        average_line(suite_average(reg.suite("bigbench").unwrap(), &bb).unwrap()),
        "Average: 41.94"
    );
    // Missing task → no average.
    assert!(suite_average(reg.suite("gpt4all").unwrap(), &gpt4all_card()[1..]).is_none());
    // Nous = mean of the four suite scores (TruthfulQA = mc2).
    let mut all = gpt4all_card();
    all.extend(agi);
    all.extend(bb);
    all.push(r(
        "truthfulqa_mc",
        1,
        817,
        &[("mc1", 0.41, 0.0), ("mc2", 0.5911, 0.0)],
    ));
    let nous = suite_average_in(&reg, reg.suite("nous").unwrap(), &all).unwrap();
    let want = (g
        + 100.0 * 3.4905 / 8.0
        + suite_average(reg.suite("bigbench").unwrap(), &all).unwrap()
        + 59.11)
        / 4.0;
    assert!((nous - want).abs() < 1e-9);
    let rep = render_report(&reg, &all);
    assert!(
        rep.contains("## TruthfulQA:\n```\n|    Task     |Version|Metric|")
            && rep.contains("## Nous:\nAverage: ")
    );
    assert!(!rep.contains("Average: 59.11"));
}

#[test]
fn stderr_hand_case_and_aggregate() {
    let reg = Registry::builtin().unwrap();
    let t = reg.task("boolq").unwrap();
    let per_doc: Vec<BTreeMap<String, f64>> = [1.0, 1.0, 0.0, 1.0, 0.0]
        .iter()
        .map(|&v| BTreeMap::from([("acc".to_string(), v)]))
        .collect();
    let res = aggregate(t, &per_doc);
    assert_eq!(res.n, 5);
    let (name, v, se) = &res.metrics[0];
    assert_eq!(name, "acc");
    assert!((v - 0.6).abs() < 1e-15);
    assert!((se - (0.6f64 * 0.4 / 4.0).sqrt()).abs() < 1e-15);
}

#[test]
fn samples_roundtrip_and_rescore() {
    let reg = Registry::builtin().unwrap();
    let t = reg.task("boolq").unwrap();
    let docs: Vec<crate::doc::Doc> = (0..4)
        .map(|i| t.build_doc(i, serde_json::json!({"question": format!("q{i}"), "passage": "p", "idx": i, "label": i % 2})).unwrap())
        .collect();
    let lls: Vec<Vec<Loglik>> = (0..4)
        .map(|i| {
            vec![
                Loglik {
                    logprob: -1.0,
                    is_greedy: true,
                    // Would flip the metric if the metrics used it.
                    logprob_f64: Some(-3.0),
                },
                Loglik {
                    logprob: if i < 2 { -0.5 } else { -2.0 },
                    is_greedy: false,
                    logprob_f64: Some(-0.25),
                },
            ]
        })
        .collect();
    let resps: Vec<crate::doc::Responses> = lls
        .iter()
        .map(|l| crate::doc::Responses {
            lls: l.clone(),
            ..Default::default()
        })
        .collect();
    let scores: Vec<crate::doc::Score> = docs
        .iter()
        .zip(&resps)
        .map(|(d, r)| t.score(d, r).unwrap())
        .collect();
    let metrics: Vec<BTreeMap<String, f64>> = scores.iter().map(|s| s.metrics.clone()).collect();
    let res = aggregate(t, &metrics);
    let dir = tempfile::tempdir().unwrap();
    let p = write_samples_jsonl(dir.path(), t, &docs, &resps, &scores).unwrap();
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        line["arguments"][0],
        serde_json::json!(["p\nQuestion: q0?\nAnswer:", " no"])
    );
    assert_eq!(line["filtered_resps"][1], serde_json::json!([-0.5, false]));
    assert_eq!(line["resps"][0], serde_json::json!([[-1.0, true]]));
    assert_eq!(line["loglik_f64"], serde_json::json!([-3.0, -0.25]));
    assert_eq!(line["acc"], 0.0);
    // the extracted answer: boolq's prediction (yes = 1 is more likely for doc 0)
    assert_eq!(line["answer"], 1);
    assert_eq!(line["target"], "0");
    assert_eq!(line["doc_hash"].as_str().unwrap().len(), 64);
    let back = rescore(dir.path(), &reg).unwrap();
    assert_eq!(back, vec![res.clone()]);
    let rp = write_results_json(
        dir.path(),
        &serde_json::json!({"name": "m"}),
        &serde_json::json!({}),
        &[res],
        &[t],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(rp).unwrap()).unwrap();
    assert_eq!(v["results"]["boolq"]["alias"], "boolq");
    assert_eq!(v["results"]["boolq"]["acc,none"], 0.5);
    assert!(v["results"]["boolq"]["acc_stderr,none"].is_f64());
    assert_eq!(v["versions"]["boolq"], 1);
    assert_eq!(v["n-shot"]["boolq"], 0);
    assert_eq!(v["n-samples"]["boolq"]["effective"], 4);
    assert_eq!(v["task_hashes"]["boolq"], t.hash());
    assert_eq!(v["model_name"], "m");
}
