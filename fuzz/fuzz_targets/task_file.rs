//! The task-file loader and its templates: a task TOML and a dataset row (JSON, after the first
//! NUL), parsed, checked and rendered into a document.
#![no_main]
use hermes_eval::tasks::Task;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (toml, row) = text.split_once('\0').unwrap_or((&text, "{}"));
    let Ok(task) = Task::from_toml(toml, "fuzz.toml") else { return };
    if let Ok(row) = serde_json::from_str::<serde_json::Value>(row) {
        let _ = task.build_doc(0, row);
    }
});
