//! The task-file loader and its templates: a task TOML and a dataset row (JSON, after the first
//! NUL), parsed, checked and rendered into a document.
#![no_main]
use hermes_eval::tasks::Task;
use libfuzzer_sys::fuzz_target;

/// libFuzzer's panic hook aborts on every panic, also one that `limits::no_panic` catches and
/// turns into an error (minijinja's lexer panics on some stray `}}`; the binary's own hook stays
/// quiet there the same way). Any other panic still aborts and is reported as a crash.
fn tolerate_caught_template_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !hermes_eval::limits::parsing_template() {
                fuzzer_hook(info)
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_template_panics();
    let text = String::from_utf8_lossy(data);
    let (toml, row) = text.split_once('\0').unwrap_or((&text, "{}"));
    let Ok(task) = Task::from_toml(toml, "fuzz.toml") else { return };
    if let Ok(row) = serde_json::from_str::<serde_json::Value>(row) {
        let _ = task.build_doc(0, row);
    }
});
