//! Judging a parsed reply: Nous function-calling rules (TASKS_SPEC §7.6) and JSON mode (§8).
use crate::py::value::{py_repr, PyValue};
use serde::{Deserialize, Serialize};

/// Why a sample failed (first failure recorded decides the primary reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No assistant message could be extracted (§7.4).
    NoAssistantMessage,
    /// The assistant message is not well-formed XML (§7.5, card parser).
    MalformedXml,
    /// No `<tool_call>` block at all.
    NoToolCall,
    /// `<tool_call>` blocks found but none parsed as JSON / Python literal.
    MalformedJson,
    /// An empty `<tool_call></tool_call>` (reference script misbehaves / crashes).
    EmptyToolCall,
    /// Number of parsed calls differs from the number of expected calls.
    WrongCount,
    /// No generated call has the expected function name.
    WrongName,
    /// An expected argument is missing from the generated call.
    MissingArgument,
    /// BFCL: an argument not in the function doc / possible answer.
    UnexpectedArgument,
    /// BFCL: an argument of the wrong Python type.
    WrongType,
    /// An argument value differs from the expected one.
    WrongValue,
    /// The generated call fails schema validation against the tools (§7.6) or the JSON schema
    /// (§8 step 2).
    SchemaViolation,
    /// JSON mode: the schema itself is invalid (`SchemaError`).
    InvalidSchema,
    /// JSON mode: the message is not one JSON / Python literal.
    MalformedOutput,
    /// JSON mode: the parsed value is not an object (e.g. a list).
    NotAnObject,
    /// JSON mode: the top-level key sets differ.
    KeysMismatch,
    /// BFCL irrelevance: a call was made although none should be.
    UnwantedCall,
}

impl FailureReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureReason::NoAssistantMessage => "no_assistant_message",
            FailureReason::MalformedXml => "malformed_xml",
            FailureReason::NoToolCall => "no_tool_call",
            FailureReason::MalformedJson => "malformed_json",
            FailureReason::EmptyToolCall => "empty_tool_call",
            FailureReason::WrongCount => "wrong_count",
            FailureReason::WrongName => "wrong_name",
            FailureReason::MissingArgument => "missing_argument",
            FailureReason::UnexpectedArgument => "unexpected_argument",
            FailureReason::WrongType => "wrong_type",
            FailureReason::WrongValue => "wrong_value",
            FailureReason::SchemaViolation => "schema_violation",
            FailureReason::InvalidSchema => "invalid_schema",
            FailureReason::MalformedOutput => "malformed_output",
            FailureReason::NotAnObject => "not_an_object",
            FailureReason::KeysMismatch => "keys_mismatch",
            FailureReason::UnwantedCall => "unwanted_call",
        }
    }
}

/// One failure with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: FailureReason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

/// Python `isinstance(value, T)` for the JSON-schema type names of §7.6 (bool counts as int).
fn isinstance(value: &PyValue, ty: &str) -> Option<bool> {
    Some(match ty {
        "string" => matches!(value, PyValue::Str(_)),
        "number" => matches!(
            value,
            PyValue::Int(_) | PyValue::Float(_) | PyValue::Bool(_)
        ),
        "integer" => matches!(value, PyValue::Int(_) | PyValue::Bool(_)),
        "boolean" => matches!(value, PyValue::Bool(_)),
        "array" => matches!(value, PyValue::List(_)),
        "object" => matches!(value, PyValue::Dict(_)),
        "null" => matches!(value, PyValue::None),
        _ => return None,
    })
}

/// `validator.validate_function_call_schema(call, tools)` (§7.6). `Err` carries the reason text.
pub fn validate_call_schema(call: &PyValue, tools: &[serde_json::Value]) -> Result<(), String> {
    let Some(_) = call.as_dict() else {
        return Err(format!("call is a {}, not a dict", call.type_name()));
    };
    let name = match call.get("name") {
        Some(PyValue::Str(s)) => s.clone(),
        Some(other) => return Err(format!("'name' is a {}, not a str", other.type_name())),
        None => return Err("'name' missing".into()),
    };
    let args = match call.get("arguments") {
        Some(a @ PyValue::Dict(_)) => a,
        Some(other) => {
            return Err(format!(
                "'arguments' is a {}, not a dict",
                other.type_name()
            ))
        }
        None => return Err("'arguments' missing".into()),
    };
    let mut found = None;
    for (i, tool) in tools.iter().enumerate() {
        let f = tool.get("function").filter(|f| f.is_object());
        let ok = tool.get("type").and_then(|t| t.as_str()) == Some("function")
            && f.and_then(|f| f.get("name")).is_some_and(|n| n.is_string());
        if !ok {
            return Err(format!("tool {i} is not a valid FunctionSignature"));
        }
        let f = f.unwrap();
        if f["name"].as_str() == Some(name.as_str()) {
            found = Some(f);
            break;
        }
    }
    let Some(f) = found else {
        return Err(format!("no tool named {name:?}"));
    };
    let params = f.get("parameters");
    let props = params
        .and_then(|p| p.get("properties"))
        .and_then(|p| p.as_object());
    if let Some(props) = props {
        for (pname, spec) in props {
            let Some(value) = args.get(pname) else {
                continue;
            };
            if !value.truthy() {
                continue;
            }
            let ty = spec.get("type");
            if ty.and_then(|t| t.as_str()) == Some("string") {
                if let Some(en) = spec.get("enum").and_then(|e| e.as_array()) {
                    let has_none = en.iter().any(|v| v.is_null());
                    if !en.is_empty()
                        && !has_none
                        && !en.iter().any(|v| PyValue::from_json(v) == *value)
                    {
                        return Err(format!("{pname}={} not in enum", py_repr(value)));
                    }
                }
            }
            let tyname = ty.and_then(|t| t.as_str()).unwrap_or("");
            match isinstance(value, tyname) {
                Some(true) => {}
                Some(false) => {
                    return Err(format!(
                        "{pname}={} is not of type {tyname}",
                        py_repr(value)
                    ));
                }
                None => {
                    return Err(format!(
                        "{pname}: unsupported type {}",
                        ty.cloned().unwrap_or_default()
                    ))
                }
            }
        }
    }
    if let Some(req) = params
        .and_then(|p| p.get("required"))
        .and_then(|r| r.as_array())
    {
        for r in req {
            let r = r.as_str().unwrap_or("");
            if args.get(r).is_none() {
                return Err(format!("required argument {r:?} missing"));
            }
        }
    }
    Ok(())
}

/// §7.6 rules 2–3 on parsed calls (rule 1 — at least one parsed call — is checked by the caller).
/// Returns every failure in the order the reference script logs them.
pub fn judge_nous_calls(
    parsed: &[PyValue],
    expected: &[PyValue],
    tools: &[serde_json::Value],
) -> Vec<Failure> {
    let mut fails = Vec::new();
    if parsed.len() != expected.len() {
        fails.push(Failure::new(
            FailureReason::WrongCount,
            format!(
                "{} calls generated, {} expected",
                parsed.len(),
                expected.len()
            ),
        ));
    }
    for e in expected {
        let ename = e.get("name").cloned().unwrap_or(PyValue::None);
        let mut matched = false;
        let mut schema_failed = false;
        for g in parsed {
            if let Err(why) = validate_call_schema(g, tools) {
                fails.push(Failure::new(FailureReason::SchemaViolation, why));
                schema_failed = true;
                break;
            }
            if g.get("name") == Some(&ename) {
                matched = true;
                let eargs = e.get("arguments").and_then(|a| a.as_dict()).unwrap_or(&[]);
                let gargs = g.get("arguments").unwrap();
                for (k, ev) in eargs {
                    let key = k.as_str().unwrap_or("");
                    match gargs.get(key) {
                        // a missing key reads as None, which equals an expected None
                        None if *ev != PyValue::None => fails.push(Failure::new(
                            FailureReason::MissingArgument,
                            format!("{}: argument {key:?} missing", py_repr(&ename)),
                        )),
                        Some(gv) if gv != ev => fails.push(Failure::new(
                            FailureReason::WrongValue,
                            format!(
                                "{}: {key}={} expected {}",
                                py_repr(&ename),
                                py_repr(gv),
                                py_repr(ev)
                            ),
                        )),
                        _ => {}
                    }
                }
                break;
            }
        }
        if !matched && !schema_failed {
            fails.push(Failure::new(
                FailureReason::WrongName,
                format!("no call named {}", py_repr(&ename)),
            ));
        }
    }
    fails
}

/// `completion` → list of expected calls (a list as is, anything else wrapped).
pub fn expected_calls(completion: &PyValue) -> Vec<PyValue> {
    match completion {
        PyValue::List(v) => v.clone(),
        other => vec![other.clone()],
    }
}

/// §8 step 2: `jsonschema.validate(instance, schema)`; `Err((reason, detail))`.
pub fn validate_json_schema(instance: &PyValue, schema: &serde_json::Value) -> Result<(), Failure> {
    if let Err(e) = jsonschema::meta::validate(schema) {
        return Err(Failure::new(FailureReason::InvalidSchema, e.to_string()));
    }
    let validator = jsonschema::options()
        .should_validate_formats(false)
        .build(schema)
        .map_err(|e| Failure::new(FailureReason::InvalidSchema, e.to_string()))?;
    let items: Vec<&PyValue> = match instance {
        PyValue::List(v) => v.iter().collect(),
        other => vec![other],
    };
    for it in items {
        if it.has_non_json() {
            return Err(Failure::new(
                FailureReason::SchemaViolation,
                "value holds a tuple, NaN/Infinity or a non-str key (no JSON image)",
            ));
        }
        if let Err(e) = validator.validate(&it.to_json()) {
            return Err(Failure::new(FailureReason::SchemaViolation, e.to_string()));
        }
    }
    Ok(())
}

/// §8 step 3: `validate_json_completion(model, expected)`.
pub fn json_exact_match(model: &PyValue, expected: &PyValue) -> Result<(), Failure> {
    let (Some(m), Some(e)) = (model.as_dict(), expected.as_dict()) else {
        return Err(Failure::new(
            FailureReason::NotAnObject,
            format!("output is a {}", model.type_name()),
        ));
    };
    let same_keys = m.len() == e.len() && m.iter().all(|(k, _)| e.iter().any(|(k2, _)| k == k2));
    if !same_keys {
        let mk: Vec<String> = m.iter().map(|(k, _)| py_repr(k)).collect();
        let ek: Vec<String> = e.iter().map(|(k, _)| py_repr(k)).collect();
        return Err(Failure::new(
            FailureReason::KeysMismatch,
            format!("keys [{}] expected [{}]", mk.join(", "), ek.join(", ")),
        ));
    }
    for (k, ev) in e {
        let mv = m.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v).unwrap();
        if mv != ev {
            return Err(Failure::new(
                FailureReason::WrongValue,
                format!("{}={} expected {}", py_repr(k), py_repr(mv), py_repr(ev)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod hostile_schema_tests {
    use super::*;
    use serde_json::json;

    /// A `$ref` cycle or self-reference in a dataset's schema is a failure of that sample
    /// (invalid schema or a violation), never a hang or a stack overflow (issue 13).
    #[test]
    fn ref_cycles_fail_the_sample() {
        let inst = PyValue::from_json(&json!({"a": {"a": {"a": 1}}}));
        for schema in [
            json!({"$ref": "#"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"definitions": {"a": {"allOf": [{"$ref": "#/definitions/a"}]}}, "$ref": "#/definitions/a"}),
            json!({"properties": {"a": {"$ref": "#"}}, "type": "object"}),
        ] {
            let t = std::time::Instant::now();
            let r = validate_json_schema(&inst, &schema);
            assert!(t.elapsed() < std::time::Duration::from_secs(5), "{schema}");
            let _ = r;
        }
    }
}
