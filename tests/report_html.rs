//! report.html / comparison.html render in headless Chromium without console errors and show
//! every task. Skipped (with a message) only where no Chromium is installed.
use hermes_eval::compare::{CompareOptions, Comparison, MetricComparison, SuiteComparison};
use hermes_eval::report::card::{compare, Card};
use hermes_eval::report::html::{comparison_html, run_html, FailureBreakdown};
use hermes_eval::report::TaskResult;
use hermes_eval::tasks::Registry;
use std::path::Path;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Loads the page headless; returns the serialized DOM and the browser's log lines that report
/// page console messages or load errors.
fn render(browser: &str, page: &Path, dir: &Path) -> (String, Vec<String>) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let bad = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR_"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), bad)
}

fn run_results(reg: &Registry) -> Vec<TaskResult> {
    reg.tasks()
        .enumerate()
        .map(|(i, t)| TaskResult {
            task: t.name.clone(),
            version: t.version,
            n: if t.name == "arc_challenge" {
                20
            } else {
                t.def.n.unwrap_or(100)
            },
            metrics: t
                .metric_names()
                .into_iter()
                .enumerate()
                .map(|(k, m)| (m, 0.25 + 0.01 * ((i + k) % 50) as f64, 0.012))
                .collect(),
        })
        .collect()
}

#[test]
fn run_and_comparison_pages_render_in_chromium() {
    let reg = Registry::builtin().unwrap();
    let results = run_results(&reg);
    let card = compare(
        &Card::load("hermes-2-pro-mistral-7b").unwrap(),
        &results,
        &reg,
    );
    let failures = [FailureBreakdown {
        task: "func_calling_eval".into(),
        n: 100,
        reasons: vec![("wrong_arguments".into(), 20), ("no_tool_call".into(), 18)],
    }];
    let page = run_html(
        "hermes-eval report <test>",
        &reg,
        &results,
        Some(&card),
        &failures,
    );
    // Self-contained: nothing to fetch, no script.
    assert!(!page.contains("http") && !page.contains("<script") && !page.contains("<link"));

    let metrics: Vec<MetricComparison> = results
        .iter()
        .map(|r| MetricComparison {
            task: r.task.clone(),
            metric: r.metrics[0].0.clone(),
            primary: true,
            baseline: r.metrics[0].1,
            candidate: r.metrics[0].1 - 0.02,
            baseline_stderr: Some(0.01),
            candidate_stderr: Some(0.01),
            delta_points: -2.0,
            n_docs: Some(r.n),
            test: None,
            significant: false,
            regression: false,
        })
        .collect();
    let cmp = Comparison {
        baseline_dir: "base".into(),
        candidate_dir: "cand".into(),
        baseline_results: "base/results.json".into(),
        candidate_results: "cand/results.json".into(),
        baseline_model: Some("base-model".into()),
        candidate_model: Some("cand-model".into()),
        options: CompareOptions::default(),
        metrics,
        agreement: vec![],
        suites: reg
            .suites()
            .iter()
            .filter(|s| !s.tasks.is_empty())
            .map(|s| SuiteComparison {
                suite: s.name.clone(),
                rule: s.average.join("/"),
                tasks: s.tasks.clone(),
                baseline: 40.0,
                candidate: 38.0,
                delta_points: -2.0,
                p_value: Some(0.2),
                regression: false,
            })
            .collect(),
        only_in_baseline: vec![],
        only_in_candidate: vec![],
        notes: vec![],
    };
    let cpage = comparison_html(&cmp);
    // Keep the pages for a look: HERMES_EVAL_HTML_OUT=<dir>.
    if let Some(d) = std::env::var_os("HERMES_EVAL_HTML_OUT") {
        std::fs::write(Path::new(&d).join("report.html"), &page).unwrap();
        std::fs::write(Path::new(&d).join("comparison.html"), &cpage).unwrap();
    }

    let Some(browser) = chromium() else {
        println!(
            "SKIPPED: no chromium installed (apt-get install -y chromium); pages not rendered"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, html, svgs) in [("report.html", &page, 5), ("comparison.html", &cpage, 5)] {
        let p = dir.path().join(name);
        std::fs::write(&p, html).unwrap();
        let (dom, bad) = render(browser, &p, dir.path());
        assert!(bad.is_empty(), "{name}: console errors: {bad:?}");
        assert!(dom.contains("</html>"), "{name}: no DOM");
        for r in &results {
            assert!(dom.contains(&r.task), "{name}: task {} not shown", r.task);
        }
        assert!(
            dom.matches("<svg").count() >= svgs,
            "{name}: charts missing"
        );
        if name == "report.html" {
            assert!(dom.contains("arc_challenge: 20 of 1172 documents"));
            assert!(dom.contains("wrong_arguments"));
            assert!(dom.contains("Suite averages"));
        }
    }
}
