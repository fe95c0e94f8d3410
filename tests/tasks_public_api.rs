//! The public API the engine calls, end to end on the local mirror (skips when it is absent).
use std::path::PathBuf;

use hermes_eval::data::DataSource;
use hermes_eval::doc::{Loglik, Responses};
use hermes_eval::report;
use hermes_eval::tasks::Registry;

#[test]
fn tasks_load_score_report_rescore() {
    let hub = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/hub"));
    if !hub.is_dir() {
        eprintln!("note: {} absent, skipping", hub.display());
        return;
    }
    let reg = Registry::builtin().unwrap();
    assert!(hermes_eval::tasks::validate(None).unwrap().is_empty());
    let data = DataSource::new(Some(hub));
    let tasks = reg
        .resolve(None, &["arc_easy".into(), "piqa".into()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for t in &tasks {
        let docs = t.load_docs(&data, Some(10)).unwrap();
        // A fake model: the first choice is always the most likely.
        let lls: Vec<Vec<Loglik>> = docs
            .iter()
            .map(|d| {
                (0..d.requests.len())
                    .map(|i| Loglik {
                        logprob: -1.0 - i as f64,
                        is_greedy: i == 0,
                        logprob_f64: None,
                    })
                    .collect()
            })
            .collect();
        let resps: Vec<Responses> = lls
            .into_iter()
            .map(|lls| Responses {
                lls,
                ..Default::default()
            })
            .collect();
        let scores: Vec<_> = docs
            .iter()
            .zip(&resps)
            .map(|(d, r)| t.score(d, r).unwrap())
            .collect();
        assert!(
            scores.iter().all(|s| s.answer == 0),
            "the first choice is chosen"
        );
        let per_doc: Vec<_> = scores.iter().map(|s| s.metrics.clone()).collect();
        report::write_samples_jsonl(dir.path(), t, &docs, &resps, &scores).unwrap();
        results.push(report::aggregate(t, &per_doc));
    }
    let table = report::card_table(&results);
    assert!(
        table.starts_with("|  Task  |Version| Metric |Value |   |Stderr|\n"),
        "{table}"
    );
    let back = report::rescore(dir.path(), &reg).unwrap();
    assert_eq!(back, results);
    let suites = reg.suites_for(&tasks);
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0].name, "gpt4all");
    assert!(report::suite_average(suites[0], &results).is_none());
}
