//! BFCL possible-answer matching, after the semantics of gorilla's
//! `bfcl_eval/eval_checker/ast_eval/ast_checker.py` (Python language only): function name must
//! match; every required parameter present; no parameter outside the doc / possible answer; each
//! value of the doc's type (int accepted for float; a value of the possible answers' type counts
//! as a "variable") and equal to one acceptable value (strings normalised: spaces and `,./-_*^`
//! removed, lowercased, `'`→`"`); `""` among the acceptable values marks an optional parameter;
//! dicts and lists of dicts checked key by key; `parallel*` categories match calls in any order,
//! `multiple*` checks the single call against the single answer, irrelevance passes iff no call,
//! relevance iff at least one call.
use super::judge::{Failure, FailureReason};
use crate::py::value::{py_repr, PyValue};

/// Category kinds that decide the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerKind {
    Simple,
    Multiple,
    Parallel,
    Irrelevance,
    Relevance,
}

pub fn checker_kind(category: &str) -> CheckerKind {
    if category.contains("irrelevance") {
        CheckerKind::Irrelevance
    } else if category.contains("relevance") {
        CheckerKind::Relevance
    } else if category.contains("parallel") {
        CheckerKind::Parallel
    } else if category.contains("multiple") {
        CheckerKind::Multiple
    } else {
        CheckerKind::Simple
    }
}

/// A model call as BFCL sees it: name and arguments.
pub type Call = (String, PyValue);

/// Turn parsed Hermes calls (`{"name":…, "arguments":{…}}`) into BFCL calls.
pub fn to_calls(parsed: &[PyValue]) -> Result<Vec<Call>, Failure> {
    parsed
        .iter()
        .map(|c| match (c.get("name"), c.get("arguments")) {
            (Some(PyValue::Str(n)), Some(a @ PyValue::Dict(_))) => Ok((n.clone(), a.clone())),
            _ => Err(Failure::new(
                FailureReason::SchemaViolation,
                format!(
                    "call is not {{'name': str, 'arguments': dict}}: {}",
                    py_repr(c)
                ),
            )),
        })
        .collect()
}

fn standardize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | ',' | '.' | '/' | '-' | '_' | '*' | '^'))
        .collect::<String>()
        .to_lowercase()
        .replace('\'', "\"")
}

fn std_value(v: &PyValue) -> PyValue {
    match v {
        PyValue::Str(s) => PyValue::Str(standardize(s)),
        o => o.clone(),
    }
}

fn contains(list: &[PyValue], v: &PyValue) -> bool {
    list.iter().any(|x| x == v)
}

fn python_type(desc: &str) -> Option<&'static str> {
    Some(match desc {
        "string" | "any" => "str",
        "integer" => "int",
        "float" => "float",
        "boolean" => "bool",
        "array" | "tuple" => "list",
        "dict" => "dict",
        _ => return None,
    })
}

fn first_answer_type(answers: &[PyValue]) -> Option<&'static str> {
    answers
        .iter()
        .find(|a| a.as_str() != Some(""))
        .map(|a| a.type_name())
}

/// `type_checker`: Ok(is_variable) or the failure.
fn type_check(
    param: &str,
    value: &PyValue,
    answers: &[PyValue],
    expected: &str,
    nested: Option<&str>,
) -> Result<bool, Failure> {
    let pa_type = first_answer_type(answers);
    let is_variable = pa_type.is_some_and(|t| t != expected);
    if value.type_name() == expected {
        match nested {
            None => return Ok(is_variable),
            Some(inner) => {
                for item in answers {
                    let ok = match item {
                        PyValue::List(pal) => match value {
                            PyValue::List(vs) => vs
                                .iter()
                                .all(|vi| type_check(param, vi, pal, inner, None).is_ok()),
                            _ => true,
                        },
                        _ => true,
                    };
                    if ok {
                        return Ok(is_variable);
                    }
                }
            }
        }
    }
    if pa_type.is_some_and(|t| t == value.type_name()) {
        return Ok(true);
    }
    Err(Failure::new(
        FailureReason::WrongType,
        format!(
            "{param}={} is a {}, expected {expected}",
            py_repr(value),
            value.type_name()
        ),
    ))
}

fn dict_check(param: &str, value: &PyValue, answers: &[PyValue]) -> Result<(), Failure> {
    let mut last = Failure::new(
        FailureReason::WrongValue,
        format!("{param}: no acceptable dict"),
    );
    let model = value.as_dict().unwrap_or(&[]);
    'answers: for ans in answers {
        if ans.as_str() == Some("") {
            continue;
        }
        let Some(ad) = ans.as_dict() else { continue };
        for (k, v) in model {
            let Some(acceptable) = ad.iter().find(|(k2, _)| k2 == k).map(|(_, a)| a) else {
                last = Failure::new(
                    FailureReason::UnexpectedArgument,
                    format!("{param}: unexpected key {}", py_repr(k)),
                );
                continue 'answers;
            };
            let acc: Vec<PyValue> = match acceptable {
                PyValue::List(l) => l.iter().map(std_value).collect(),
                _ => vec![],
            };
            if !contains(&acc, &std_value(v)) {
                last = Failure::new(
                    FailureReason::WrongValue,
                    format!("{param}[{}]={}", py_repr(k), py_repr(v)),
                );
                continue 'answers;
            }
        }
        for (k, acceptable) in ad {
            let optional =
                matches!(acceptable, PyValue::List(l) if contains(l, &PyValue::Str(String::new())));
            if !model.iter().any(|(k2, _)| k2 == k) && !optional {
                last = Failure::new(
                    FailureReason::MissingArgument,
                    format!("{param}: missing key {}", py_repr(k)),
                );
                continue 'answers;
            }
        }
        return Ok(());
    }
    Err(last)
}

fn list_dict_check(param: &str, value: &PyValue, answers: &[PyValue]) -> Result<(), Failure> {
    let model = match value {
        PyValue::List(v) => v.as_slice(),
        _ => &[],
    };
    let mut last = Failure::new(
        FailureReason::WrongValue,
        format!("{param}: no acceptable list of dicts"),
    );
    for ans in answers {
        let al: Vec<PyValue> = match ans {
            PyValue::List(l) => l.clone(),
            PyValue::Str(s) => s.chars().map(|c| PyValue::Str(c.to_string())).collect(),
            _ => continue,
        };
        if al.len() != model.len() {
            last = Failure::new(
                FailureReason::WrongValue,
                format!("{param}: wrong number of dicts"),
            );
            continue;
        }
        match model
            .iter()
            .zip(&al)
            .try_for_each(|(m, a)| dict_check(param, m, std::slice::from_ref(a)))
        {
            Ok(()) => return Ok(()),
            Err(f) => last = f,
        }
    }
    Err(last)
}

fn list_check(param: &str, value: &PyValue, answers: &[PyValue]) -> Result<(), Failure> {
    let model = match value {
        PyValue::List(v) | PyValue::Tuple(v) => PyValue::List(v.iter().map(std_value).collect()),
        o => o.clone(),
    };
    let std_answers: Vec<PyValue> = answers
        .iter()
        .map(|a| match a {
            PyValue::List(l) => PyValue::List(l.iter().map(std_value).collect()),
            // Python iterates a str answer ("" = optional) character by character.
            PyValue::Str(s) => PyValue::List(
                s.chars()
                    .map(|c| PyValue::Str(standardize(&c.to_string())))
                    .collect(),
            ),
            o => o.clone(),
        })
        .collect();
    if contains(&std_answers, &model) {
        Ok(())
    } else {
        Err(Failure::new(
            FailureReason::WrongValue,
            format!("{param}={} not acceptable", py_repr(value)),
        ))
    }
}

/// `simple_function_checker(func_doc, {name: args}, {exp_name: possible})`.
pub fn check_one(
    func: &serde_json::Value,
    call: &Call,
    expected_name: &str,
    possible: &PyValue,
) -> Result<(), Failure> {
    let (name, args) = call;
    if name != expected_name {
        return Err(Failure::new(
            FailureReason::WrongName,
            format!("called {name:?}, expected {expected_name:?}"),
        ));
    }
    let params = &func["parameters"];
    let props = params.get("properties").and_then(|p| p.as_object());
    let margs = args.as_dict().unwrap_or(&[]);
    let possible = possible.as_dict().unwrap_or(&[]);
    for r in params
        .get("required")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let r = r.as_str().unwrap_or("");
        if args.get(r).is_none() {
            return Err(Failure::new(
                FailureReason::MissingArgument,
                format!("{name}: required {r:?} missing"),
            ));
        }
    }
    for (k, v) in margs {
        let key = k.as_str().unwrap_or("");
        let spec = props.and_then(|p| p.get(key));
        let answers = possible
            .iter()
            .find(|(pk, _)| pk.as_str() == Some(key))
            .map(|(_, a)| a);
        let (Some(spec), Some(answers)) = (spec, answers) else {
            return Err(Failure::new(
                FailureReason::UnexpectedArgument,
                format!("{name}: unexpected {key:?}"),
            ));
        };
        let answers: &[PyValue] = match answers {
            PyValue::List(l) => l,
            _ => &[],
        };
        let desc = spec.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let Some(expected) = python_type(desc) else {
            return Err(Failure::new(
                FailureReason::WrongType,
                format!("{name}.{key}: unsupported doc type {desc:?}"),
            ));
        };
        let nested = if desc == "array" || desc == "tuple" {
            let it = spec
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("");
            Some(python_type(it).ok_or_else(|| {
                Failure::new(
                    FailureReason::WrongType,
                    format!("{name}.{key}: unsupported item type {it:?}"),
                )
            })?)
        } else {
            None
        };
        let mut value = v.clone();
        if desc == "tuple" {
            if let PyValue::Tuple(t) = value {
                value = PyValue::List(t);
            }
        }
        if desc == "float" {
            if let PyValue::Int(i) = value {
                value = PyValue::Float(i as f64);
            }
        }
        let is_variable = type_check(key, &value, answers, expected, nested)?;
        if !is_variable {
            let r = if expected == "dict" {
                Some(dict_check(key, &value, answers))
            } else if expected == "list" && nested == Some("dict") {
                Some(list_dict_check(key, &value, answers))
            } else if expected == "str" {
                let sv = std_value(&value);
                let acc: Vec<PyValue> = answers
                    .iter()
                    .filter(|a| a.as_str().is_some())
                    .map(std_value)
                    .collect();
                Some(if contains(&acc, &sv) {
                    Ok(())
                } else {
                    Err(Failure::new(
                        FailureReason::WrongValue,
                        format!("{name}.{key}={} not acceptable", py_repr(&value)),
                    ))
                })
            } else if expected == "list" {
                Some(list_check(key, &value, answers))
            } else {
                None
            };
            if let Some(r) = r {
                r?;
                continue;
            }
        }
        if !contains(answers, &value) {
            return Err(Failure::new(
                FailureReason::WrongValue,
                format!("{name}.{key}={} not acceptable", py_repr(&value)),
            ));
        }
    }
    for (pk, answers) in possible {
        let optional =
            matches!(answers, PyValue::List(l) if contains(l, &PyValue::Str(String::new())));
        if !optional && !margs.iter().any(|(k, _)| k == pk) {
            return Err(Failure::new(
                FailureReason::MissingArgument,
                format!("{name}: {} not provided and not optional", py_repr(pk)),
            ));
        }
    }
    Ok(())
}

fn find_func<'a>(functions: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    functions
        .iter()
        .find(|f| f.get("name").and_then(|n| n.as_str()) == Some(name))
}

fn answer_entry(a: &PyValue) -> Option<(String, PyValue)> {
    let d = a.as_dict()?;
    let (k, v) = d.first()?;
    Some((k.as_str()?.to_string(), v.clone()))
}

/// Judge one BFCL sample. `ground_truth` is the possible_answer row's `ground_truth` list.
pub fn judge_bfcl(
    category: &str,
    functions: &[serde_json::Value],
    calls: &[Call],
    ground_truth: &[PyValue],
) -> Result<(), Failure> {
    let kind = checker_kind(category);
    match kind {
        CheckerKind::Irrelevance => {
            if calls.is_empty() {
                return Ok(());
            }
            return Err(Failure::new(
                FailureReason::UnwantedCall,
                format!("{} call(s) made", calls.len()),
            ));
        }
        CheckerKind::Relevance => {
            if calls.is_empty() {
                return Err(Failure::new(FailureReason::NoToolCall, "no call made"));
            }
            return Ok(());
        }
        _ => {}
    }
    if calls.len() != ground_truth.len() {
        return Err(Failure::new(
            FailureReason::WrongCount,
            format!(
                "{} calls generated, {} expected",
                calls.len(),
                ground_truth.len()
            ),
        ));
    }
    let lookup = |a: &PyValue| -> Result<(String, PyValue, &serde_json::Value), Failure> {
        let (n, p) = answer_entry(a)
            .ok_or_else(|| Failure::new(FailureReason::WrongValue, "malformed possible answer"))?;
        let f = find_func(functions, &n)
            .or(if kind == CheckerKind::Simple {
                functions.first()
            } else {
                None
            })
            .ok_or_else(|| Failure::new(FailureReason::WrongName, format!("no doc for {n:?}")))?;
        Ok((n, p, f))
    };
    match kind {
        CheckerKind::Parallel => {
            let mut used = vec![false; calls.len()];
            for (i, a) in ground_truth.iter().enumerate() {
                let (n, p, f) = lookup(a)?;
                let mut last = None;
                let mut hit = false;
                for (j, c) in calls.iter().enumerate() {
                    if used[j] {
                        continue;
                    }
                    match check_one(f, c, &n, &p) {
                        Ok(()) => {
                            used[j] = true;
                            hit = true;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if !hit {
                    let mut f = last.unwrap_or_else(|| Failure::new(FailureReason::WrongName, ""));
                    f.detail = format!(
                        "no generated call matches expected call {i} ({n}): {}",
                        f.detail
                    );
                    return Err(f);
                }
            }
            Ok(())
        }
        _ => {
            let (n, p, f) = lookup(&ground_truth[0])?;
            check_one(f, &calls[0], &n, &p)
        }
    }
}
