//! The tool-call parsers on a model's completion: both `<tool_call>` parser modes, the
//! ElementTree-like XML parser, Python's `ast.literal_eval` and `json.loads`.
#![no_main]
use hermes_eval::fc::{parse, xml};
use hermes_eval::py::value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse::parse_tool_calls(&text, parse::ParserMode::Xml);
    let _ = parse::parse_tool_calls(&text, parse::ParserMode::Regex);
    let _ = parse::extract_assistant(&text, Some("<|im_end|>"));
    let _ = xml::parse(&text);
    if let Ok(v) = value::literal_eval(&text) {
        let _ = value::py_repr(&v);
        let _ = value::py_json_dumps(&v);
    }
    let _ = value::json_loads(&text);
});
