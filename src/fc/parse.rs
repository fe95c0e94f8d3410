//! Assistant-message extraction (TASKS_SPEC §7.4) and tool-call parsing (§7.5 card version,
//! §7.7 later regex version).
use super::xml;
use crate::py::value::{json_loads, literal_eval, PyValue};
use serde::{Deserialize, Serialize};

/// Python `str.strip()` whitespace (`str.isspace`).
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Why no assistant message could be extracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExtractError {
    /// No `>` + whitespace + `assistant` is followed only by allowed text.
    NoMatch,
    /// The regex matched one of its group-less alternatives (`<\` or `im_start\`): the original
    /// script crashes on `group(1)` being None.
    GrouplessMatch,
}

/// `utils.get_assistant_message(decoded, "chatml", eos_token)`, with the regex
/// `<\\|im_start\\|>\s*assistant((?:(?!<\\|im_start\\|>\s*assistant).)*)$` read the way Python's
/// `re` reads it: three alternatives `<\`, `im_start\` and `>\s*assistant(…)$`, leftmost match.
pub fn extract_assistant(decoded: &str, eos_token: Option<&str>) -> Result<String, ExtractError> {
    let text = py_strip(decoded);
    // Returns the end of `>\s*assistant` at byte i.
    let assistant_at = |i: usize| -> Option<usize> {
        let r = text[i..].strip_prefix('>')?;
        let t = r.trim_start_matches(|c: char| py_isspace(c));
        t.strip_prefix("assistant")
            .map(|rest| text.len() - rest.len())
    };
    let forbidden_at = |k: usize| -> bool {
        text[k..].starts_with("<\\")
            || text[k..].starts_with("im_start\\")
            || assistant_at(k).is_some()
    };
    let positions: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    for (pi, &i) in positions.iter().enumerate() {
        if text[i..].starts_with("<\\") || text[i..].starts_with("im_start\\") {
            return Err(ExtractError::GrouplessMatch);
        }
        if let Some(j) = assistant_at(i) {
            // The group may not contain a position where a forbidden pattern starts.
            let ok = positions[pi..]
                .iter()
                .filter(|&&k| k >= j)
                .all(|&k| !forbidden_at(k));
            if ok {
                let mut msg = py_strip(&text[j..]).to_string();
                if let Some(eos) = eos_token.filter(|e| !e.is_empty()) {
                    msg = msg.replace(eos, "");
                }
                return Ok(msg);
            }
        }
    }
    Err(ExtractError::NoMatch)
}

/// Which tool-call parser to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ParserMode {
    /// Card version (F@746a89c): whole message must be well-formed XML, `json.loads` then
    /// `ast.literal_eval` per `<tool_call>`.
    #[default]
    Xml,
    /// Later version (F HEAD, §7.7): regex `<tool_call>(.*?)</tool_call>`, `json.loads` only.
    Regex,
}

/// How one `<tool_call>` body was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParsedBy {
    Json,
    /// `ast.literal_eval` fallback (single quotes, True/False/None, tuples).
    PythonLiteral,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParsedCall {
    pub value: PyValue,
    pub parsed_by: ParsedBy,
}

/// One `<tool_call>` body that could not be parsed (skipped by the reference script).
#[derive(Debug, Clone, Serialize)]
pub struct SkippedCall {
    pub text: String,
    pub json_error: String,
    pub literal_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ParseOutcome {
    pub calls: Vec<ParsedCall>,
    pub skipped: Vec<SkippedCall>,
    /// Number of `<tool_call>` blocks found.
    pub blocks: usize,
    /// XML well-formedness error (xml mode), or an empty `<tool_call>` (script crash).
    pub error: Option<ParseError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ParseError {
    MalformedXml(String),
    /// `<tool_call>` with no text before its first child: `.text` is None and the reference
    /// either re-appends the previous call or crashes; treated as a failure.
    EmptyToolCall,
}

impl ParseOutcome {
    /// `validation` of the reference script: no error and at least one parsed call.
    pub fn valid(&self) -> bool {
        self.error.is_none() && !self.calls.is_empty()
    }
    pub fn lenient(&self) -> bool {
        self.calls
            .iter()
            .any(|c| c.parsed_by == ParsedBy::PythonLiteral)
    }
    pub fn values(&self) -> Vec<PyValue> {
        self.calls.iter().map(|c| c.value.clone()).collect()
    }
}

fn parse_body(text: &str, allow_literal: bool, out: &mut ParseOutcome) {
    out.blocks += 1;
    match json_loads(text) {
        Ok(v) => out.calls.push(ParsedCall {
            value: v,
            parsed_by: ParsedBy::Json,
        }),
        Err(je) if allow_literal => match literal_eval(text) {
            Ok(v) => out.calls.push(ParsedCall {
                value: v,
                parsed_by: ParsedBy::PythonLiteral,
            }),
            Err(le) => out.skipped.push(SkippedCall {
                text: text.to_string(),
                json_error: je,
                literal_error: Some(le),
            }),
        },
        Err(je) => out.skipped.push(SkippedCall {
            text: text.to_string(),
            json_error: je,
            literal_error: None,
        }),
    }
}

/// Parse the tool calls of an assistant message.
pub fn parse_tool_calls(msg: &str, mode: ParserMode) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    match mode {
        ParserMode::Xml => {
            let doc = format!("<root>{msg}</root>");
            match xml::parse(&doc) {
                Err(e) => out.error = Some(ParseError::MalformedXml(e)),
                Ok(root) => {
                    for el in root.iter().into_iter().filter(|e| e.tag == "tool_call") {
                        match &el.text {
                            None => {
                                out.blocks += 1;
                                out.error = Some(ParseError::EmptyToolCall);
                            }
                            Some(t) => parse_body(py_strip(t), true, &mut out),
                        }
                    }
                }
            }
        }
        ParserMode::Regex => {
            let mut rest = msg;
            while let Some(s) = rest.find("<tool_call>") {
                let body = &rest[s + "<tool_call>".len()..];
                let Some(e) = body.find("</tool_call>") else {
                    break;
                };
                parse_body(&body[..e], false, &mut out);
                rest = &body[e + "</tool_call>".len()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction() {
        let d = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n hi there <|im_end|>";
        assert_eq!(
            extract_assistant(d, Some("<|im_end|>")).unwrap(),
            "hi there "
        );
        assert_eq!(
            extract_assistant("no marker", None),
            Err(ExtractError::NoMatch)
        );
        let bad = "<|im_start|>assistant\nC:<\\path";
        assert_eq!(
            extract_assistant(bad, None),
            Err(ExtractError::GrouplessMatch)
        );
        // the last `>assistant` wins
        let two = "<|im_start|>assistant\na<|im_end|><|im_start|>assistant\nb";
        assert_eq!(extract_assistant(two, None).unwrap(), "b");
    }
}
