//! The JSON-mode and function-calling judges: an instance and a schema (split at the first NUL),
//! schema validation, exact match and a tool call checked against a tool's parameters.
#![no_main]
use hermes_eval::fc::judge;
use hermes_eval::py::value::{self, PyValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, "{}"));
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(b) else { return };
    let inst = match value::json_loads(a) {
        Ok(v) => v,
        Err(_) => match serde_json::from_str::<serde_json::Value>(a) {
            Ok(j) => PyValue::from_json(&j),
            Err(_) => return,
        },
    };
    let _ = judge::validate_json_schema(&inst, &schema);
    let _ = judge::json_exact_match(&inst, &PyValue::from_json(&schema));
    let _ = judge::validate_call_schema(&inst, std::slice::from_ref(&schema));
    let _ = judge::expected_calls(&inst);
});
