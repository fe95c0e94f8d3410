//! Corruptions fail with the right reason; parser cases; Python equality; exact prompt text;
//! chat templates.
mod fc_common;
use fc_common::*;
use hermes_eval::chat::{ChatTemplate, Message};
use hermes_eval::fc::data::{self, FcSample, FcTarget, JsonSample};
use hermes_eval::fc::parse::{extract_assistant, parse_tool_calls, ParsedBy};
use hermes_eval::fc::prompt::fc_system_prompt;
use hermes_eval::fc::{score_fc, score_json, FailureReason as R, ParserMode, SchemaOrder};
use hermes_eval::py::value::{json_loads, literal_eval, PyValue};

const HEAD: &str =
    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n";

fn nous() -> Vec<FcSample> {
    let rows = data::read_rows(&fixture("func_calling_eval.jsonl")).unwrap();
    data::fc_samples_from_nous_rows(&rows, SchemaOrder::V1).unwrap()
}

fn fc(sample: &FcSample, reply: &str) -> hermes_eval::fc::SampleRecord {
    score_fc(sample, HEAD, reply, Some("<|im_end|>"), ParserMode::Xml)
}

#[test]
fn nous_corruptions_fail_with_the_right_reason() {
    let s = nous();
    let ok0 = r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "AAPL", "exchange": "NASDAQ"}}</tool_call>"#;
    assert!(fc(&s[0], ok0).passed);
    // text around the calls and extra generated keys are fine; argument order does not matter
    let ok = r#"Sure! <tool_call> {"arguments": {"exchange": "NASDAQ", "symbol": "AAPL"}, "name": "get_stock_price"} </tool_call> Done."#;
    assert!(fc(&s[0], ok).passed);
    let cases: Vec<(&FcSample, String, R)> = vec![
        (&s[0], "The price is $190.".to_string(), R::NoToolCall),
        (&s[0], format!("{ok0}</tools>"), R::MalformedXml),
        (&s[0], format!("{ok0} 1 < 2"), R::MalformedXml),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "AT&T"}}</tool_call>"#.to_string(), R::MalformedXml),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "AAPL"</tool_call>"#.to_string(), R::MalformedJson),
        (&s[0], "<tool_call></tool_call>".to_string(), R::EmptyToolCall),
        (&s[0], format!("{ok0}\n{ok0}"), R::WrongCount),
        (&s[0], r#"<tool_call>{"name": "get_company_news", "arguments": {"company": "Apple"}}</tool_call>"#.to_string(), R::WrongName),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "AAPL"}}</tool_call>"#.to_string(), R::MissingArgument),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "aapl", "exchange": "NASDAQ"}}</tool_call>"#.to_string(), R::WrongValue),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "AAPL", "exchange": "LSE"}}</tool_call>"#.to_string(), R::SchemaViolation),
        (&s[0], r#"<tool_call>{"name": "get_stock_price", "arguments": {"exchange": "NASDAQ"}}</tool_call>"#.to_string(), R::SchemaViolation),
        (&s[0], r#"<tool_call>{"name": "get_price", "arguments": {"symbol": "AAPL"}}</tool_call>"#.to_string(), R::SchemaViolation),
        (&s[0], r#"<tool_call>["get_stock_price", {"symbol": "AAPL"}]</tool_call>"#.to_string(), R::SchemaViolation),
        (&s[1], r#"<tool_call>{"name": "get_company_news", "arguments": {"company": "Tesla", "count": "3"}}</tool_call><tool_call>{"name": "get_stock_price", "arguments": {"symbol": "MSFT"}}</tool_call>"#.to_string(), R::SchemaViolation),
        (&s[0], "no assistant marker".to_string(), R::NoAssistantMessage),
    ];
    for (sample, reply, reason) in cases {
        let rec = if reason == R::NoAssistantMessage {
            score_fc(sample, "", &reply, None, ParserMode::Xml)
        } else {
            fc(sample, &reply)
        };
        assert!(!rec.passed, "{reply}");
        assert_eq!(rec.reason, Some(reason), "{reply}: {:?}", rec.failures);
    }
}

#[test]
fn nous_python_equality_and_quirks() {
    let s = nous();
    // 100 == 100.0; Python-literal fallback; apostrophes inside strings; the parallel row in any order
    let r = fc(
        &s[2],
        r#"<tool_call>{'name': 'convert_currency', 'arguments': {'amount': 100.0, 'from': 'USD', 'to': 'EUR'}}</tool_call>"#,
    );
    assert!(r.passed && r.lenient, "{:?}", r.failures);
    let r = fc(
        &s[1],
        r#"<tool_call>{"name": "get_stock_price", "arguments": {"symbol": "MSFT"}}</tool_call>
<tool_call>{"name": "get_company_news", "arguments": {"company": "Tesla", "count": 3, "include_blogs": false}}</tool_call>"#,
    );
    assert!(r.passed, "{:?}", r.failures);
    // unicode, False (falsy values are not type-checked)
    let r = fc(&s[3], "<tool_call>{'name': 'get_company_news', 'arguments': {'company': 'Café Señor Ñandú', 'include_blogs': False}}</tool_call>");
    assert!(r.passed, "{:?}", r.failures);
    // True == 1 for an expected integer… but True fails the boolean→bool type check only when truthy and typed wrong
    let r = fc(
        &s[3],
        r#"<tool_call>{"name": "get_company_news", "arguments": {"company": "Café Señor Ñandú", "include_blogs": 0}}</tool_call>"#,
    );
    assert!(
        r.passed,
        "0 == False and falsy values skip the type check: {:?}",
        r.failures
    );
}

#[test]
fn parser_cases() {
    let m = "I'll call two tools.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"q\": \"Joe's diner\"}}\n</tool_call>\n<tool_call>\n{'name': 'b', 'arguments': {'flag': True, 'x': None, 't': (1, 2), 's': \"it's\"}}\n</tool_call>";
    let out = parse_tool_calls(m, ParserMode::Xml);
    assert!(out.valid());
    assert_eq!(out.calls.len(), 2);
    assert_eq!(out.calls[0].parsed_by, ParsedBy::Json);
    assert_eq!(out.calls[1].parsed_by, ParsedBy::PythonLiteral);
    assert_eq!(
        out.calls[0]
            .value
            .get("arguments")
            .unwrap()
            .get("q")
            .unwrap()
            .as_str(),
        Some("Joe's diner")
    );
    let args1 = out.calls[1].value.get("arguments").unwrap();
    assert_eq!(args1.get("flag"), Some(&PyValue::Bool(true)));
    assert_eq!(args1.get("x"), Some(&PyValue::None));
    assert!(matches!(args1.get("t"), Some(PyValue::Tuple(_))));
    // missing closing tag: XML rejects; regex mode finds only closed blocks
    let unclosed = "<tool_call>{\"name\": \"a\", \"arguments\": {}}";
    assert!(!parse_tool_calls(unclosed, ParserMode::Xml).valid());
    assert!(!parse_tool_calls(unclosed, ParserMode::Regex).valid());
    // regex mode tolerates stray XML but not Python literals
    let stray =
        "x < y <tool_call>{\"name\": \"a\", \"arguments\": {\"s\": \"AT&T\"}}</tool_call> </tools>";
    assert!(!parse_tool_calls(stray, ParserMode::Xml).valid());
    assert!(parse_tool_calls(stray, ParserMode::Regex).valid());
    assert!(!parse_tool_calls(
        "<tool_call>{'name': 'a', 'arguments': {}}</tool_call>",
        ParserMode::Regex
    )
    .valid());
    // unicode and escaped XML entities
    let u = parse_tool_calls("<tool_call>{\"name\": \"météo\", \"arguments\": {\"ville\": \"Zürich &amp; 東京\"}}</tool_call>", ParserMode::Xml);
    assert_eq!(
        u.calls[0]
            .value
            .get("arguments")
            .unwrap()
            .get("ville")
            .unwrap()
            .as_str(),
        Some("Zürich & 東京")
    );
    // an unparsable block is skipped, a parsable one kept
    let mixed = parse_tool_calls(
        "<tool_call>{oops}</tool_call><tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
        ParserMode::Xml,
    );
    assert_eq!((mixed.calls.len(), mixed.skipped.len()), (1, 1));
    // nested tool_call elements are found at any depth
    let nested = parse_tool_calls(
        "<x><tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call></x>",
        ParserMode::Xml,
    );
    assert_eq!(nested.calls.len(), 1);
}

#[test]
fn python_equality_cases() {
    let j = |s: &str| json_loads(s).unwrap();
    assert_eq!(j("1"), j("1.0"));
    assert_eq!(j("1"), j("true"));
    assert_eq!(j("0"), j("false"));
    assert_ne!(j("2"), j("true"));
    assert_eq!(
        j(r#"{"a": [1, {"b": 2}], "c": null}"#),
        j(r#"{"c": null, "a": [1.0, {"b": 2.0}]}"#)
    );
    assert_ne!(j("[1, 2]"), j("[2, 1]"));
    assert_ne!(j(r#"{"a": 1}"#), j(r#"{"a": 1, "b": 2}"#));
    assert_ne!(j(r#""1""#), j("1"));
    assert_ne!(j(r#""a ""#), j(r#""a""#));
    assert!(literal_eval("True+1").is_err());
    assert_ne!(literal_eval("(1, 2)").unwrap(), j("[1, 2]"));
    assert_eq!(
        literal_eval("{'a': (1, 2.0)}").unwrap(),
        literal_eval("{'a': (1.0, 2)}").unwrap()
    );
}

#[test]
fn system_prompt_matches_spec_exactly() {
    let tools = r#"[{"type": "function", "function": {"name": "get_stock_price", "description": "Get the stock price", "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}}]"#;
    let expected = "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. Here are the available tools: <tools> [{\"type\": \"function\", \"function\": {\"name\": \"get_stock_price\", \"description\": \"Get the stock price\", \"parameters\": {\"type\": \"object\", \"properties\": {\"symbol\": {\"type\": \"string\"}}, \"required\": [\"symbol\"]}}}] </tools> Use the following pydantic model json schema for each tool call you will make: {'title': 'FunctionCall', 'type': 'object', 'properties': {'arguments': {'title': 'Arguments', 'type': 'object'}, 'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name']} For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>";
    assert_eq!(fc_system_prompt(tools, SchemaOrder::V1), expected);
    // newlines inside the tools string become spaces
    assert!(fc_system_prompt("[\n{}\n]", SchemaOrder::V1).contains("<tools> [ {} ] </tools>"));
    let v2 = fc_system_prompt(tools, SchemaOrder::V2);
    assert!(v2.contains("{'properties': {'arguments': {'title': 'Arguments', 'type': 'object'}, 'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name'], 'title': 'FunctionCall', 'type': 'object'}"));
    // the fixture sample's system message is that prompt with its tools string
    let s = &nous()[0];
    assert_eq!(s.messages[0].role, "system");
    assert!(s.messages[0].content.ends_with("</tool_call>"));
    assert_eq!(
        s.messages[1],
        Message::new("user", "What is Apple's stock price on NASDAQ?")
    );
}

fn json_samples() -> Vec<JsonSample> {
    let rows = data::read_rows(&fixture("json_mode_eval.jsonl")).unwrap();
    data::json_samples_from_nous_rows(&rows).unwrap()
}

#[test]
fn json_mode_corruptions() {
    let s = json_samples();
    let ok = r#"{"ssid": "OfficeNetSecure", "securityProtocol": "WPA2-Enterprise", "bandwidth": "1300 Mbps"}"#;
    let j = |i: usize, reply: &str| score_json(&s[i], HEAD, reply, Some("<|im_end|>"));
    assert!(j(0, ok).passed);
    assert!(j(0, &format!("  {ok}\n")).passed);
    let lit = j(0, "{'ssid': 'OfficeNetSecure', 'securityProtocol': 'WPA2-Enterprise', 'bandwidth': '1300 Mbps'}");
    assert!(lit.passed && lit.lenient);
    assert!(
        j(
            1,
            r#"{"order": {"paid": true, "total": 12.5, "items": ["tea", "scones"], "id": 42.0}}"#
        )
        .passed
    );
    let cases = [
        (0, format!("```json\n{ok}\n```"), R::MalformedOutput),
        (0, format!("Here you go: {ok}"), R::MalformedOutput),
        (0, r#"{"ssid": "OfficeNetSecure", "securityProtocol": "WPA2-Enterprise"}"#.to_string(), R::SchemaViolation),
        (0, r#"{"ssid": "OfficeNetSecure", "securityProtocol": "WPA2-Enterprise", "bandwidth": 1300}"#.to_string(), R::SchemaViolation),
        (0, r#"{"ssid": "OfficeNetSecure", "securityProtocol": "WPA2-Enterprise", "bandwidth": "1300 Mbps", "x": 1}"#.to_string(), R::KeysMismatch),
        (0, r#"{"ssid": "Office", "securityProtocol": "WPA2-Enterprise", "bandwidth": "1300 Mbps"}"#.to_string(), R::WrongValue),
        (0, format!("[{ok}]"), R::NotAnObject),
        (1, r#"{"order": {"paid": true, "total": 12.5, "items": ["scones", "tea"], "id": 42}}"#.to_string(), R::WrongValue),
    ];
    for (i, reply, reason) in cases {
        let r = j(i, &reply);
        assert!(!r.passed, "{reply}");
        assert_eq!(r.reason, Some(reason), "{reply}: {:?}", r.failures);
    }
    // an invalid schema fails every output
    let mut bad = s[0].clone();
    bad.schema = r#"{"type": "objekt"}"#.into();
    assert_eq!(
        score_json(&bad, HEAD, ok, None).reason,
        Some(R::InvalidSchema)
    );
    // schema compliance: no reference, any valid object passes
    let mut comp = s[0].clone();
    comp.expected = None;
    assert!(
        score_json(
            &comp,
            HEAD,
            r#"{"ssid": "x", "securityProtocol": "y", "bandwidth": "z", "extra": 1}"#,
            None
        )
        .passed
    );
}

/// A schema-only row whose schema is not JSON: the prompt shows the row's text as it is (not
/// Python `None`), and the sample fails as `json.loads` fails in the reference, whatever the
/// model answers.
#[test]
fn a_schema_that_is_not_json_is_shown_as_is_and_fails_its_sample() {
    let text = r#"{"type": "object", "properties": {"a": "#;
    let rows = vec![serde_json::json!({"json_schema": text, "source_path": "bad.json"})];
    let s = data::schema_compliance_samples(&rows, "Github_easy").unwrap();
    let system = &s[0].messages[0].content;
    assert!(
        system.contains(&format!("<schema>\n{text}\n</schema>")),
        "{system}"
    );
    let r = score_json(&s[0], HEAD, r#"{"a": 1}"#, None);
    assert!(!r.passed);
    assert_eq!(r.reason, Some(R::InvalidSchema));
    let rows = vec![serde_json::json!({"idx": 7, "schema": text, "completion": "{\"a\": 1}"})];
    let m = data::json_samples_from_maskbench(&rows).unwrap();
    assert!(m[0].messages[0].content.contains(text));
    assert_eq!(
        score_json(&m[0], HEAD, r#"{"a": 1}"#, None).reason,
        Some(R::InvalidSchema)
    );
}

#[test]
fn extraction_cases() {
    assert_eq!(
        extract_assistant(&format!("{HEAD}hello<|im_end|>"), Some("<|im_end|>")).unwrap(),
        "hello"
    );
    // `<\` anywhere makes the reference regex match a group-less alternative
    assert!(extract_assistant(&format!("{HEAD}C:<\\dir"), None).is_err());
}

fn bfcl_sample(category: &str, gt: &str, func: &str) -> FcSample {
    FcSample {
        id: "t".into(),
        messages: vec![],
        target: FcTarget::Bfcl {
            category: category.into(),
            functions: vec![serde_json::from_str(func).unwrap()],
            ground_truth: vec![PyValue::from_json(&serde_json::from_str(gt).unwrap())],
        },
    }
}

#[test]
fn bfcl_corruptions() {
    let func = r#"{"name": "calc_area", "description": "d", "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "float"}, "unit": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["base", "height"]}}"#;
    let gt = r#"{"calc_area": {"base": [10], "height": [5.0], "unit": ["units", ""], "tags": [["a b", "C"], ""]}}"#;
    let s = bfcl_sample("simple", gt, func);
    let call = |args: &str| {
        format!("<tool_call>{{\"name\": \"calc_area\", \"arguments\": {args}}}</tool_call>")
    };
    let r = |reply: &str| score_fc(&s, HEAD, reply, None, ParserMode::Xml);
    assert!(
        r(&call(r#"{"base": 10, "height": 5}"#)).passed,
        "int accepted for float"
    );
    assert!(
        r(&call(
            r#"{"base": 10, "height": 5.0, "unit": "Units.", "tags": ["A_B", "c"]}"#
        ))
        .passed,
        "string normalisation"
    );
    for (args, reason) in [
        (r#"{"base": 10}"#, R::MissingArgument),
        (
            r#"{"base": 10, "height": 5, "color": "red"}"#,
            R::UnexpectedArgument,
        ),
        (r#"{"base": "10", "height": 5}"#, R::WrongType),
        (r#"{"base": 10.0, "height": 5}"#, R::WrongType),
        (r#"{"base": 11, "height": 5}"#, R::WrongValue),
        (r#"{"base": 10, "height": 5, "unit": "cm"}"#, R::WrongValue),
        (
            r#"{"base": 10, "height": 5, "tags": ["c", "a b"]}"#,
            R::WrongValue,
        ),
    ] {
        let rec = r(&call(args));
        assert_eq!(rec.reason, Some(reason), "{args}: {:?}", rec.failures);
    }
    assert_eq!(
        r(&format!("{0}{0}", call(r#"{"base": 10, "height": 5}"#))).reason,
        Some(R::WrongCount)
    );
    assert_eq!(
        r("<tool_call>{\"name\": \"other\", \"arguments\": {}}</tool_call>").reason,
        Some(R::WrongName)
    );
    assert_eq!(r("no call").reason, Some(R::NoToolCall));
    // irrelevance: pass iff no call
    let irr = bfcl_sample("irrelevance", gt, func);
    assert!(score_fc(&irr, HEAD, "I can't do that.", None, ParserMode::Xml).passed);
    assert_eq!(
        score_fc(
            &irr,
            HEAD,
            &call(r#"{"base": 1, "height": 1}"#),
            None,
            ParserMode::Xml
        )
        .reason,
        Some(R::UnwantedCall)
    );
}

#[test]
fn smollm2_template_renders_like_chatml_with_default_system() {
    let text = std::fs::read_to_string(fixture("smollm2_chat_template.jinja")).unwrap();
    let t = ChatTemplate::from_string(text, "<|im_start|>", "<|im_end|>");
    let with_sys = t
        .render(
            &[Message::new("system", "S"), Message::new("user", "U")],
            None,
            true,
        )
        .unwrap();
    assert_eq!(
        with_sys,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    let no_sys = t.render(&[Message::new("user", "U")], None, false).unwrap();
    assert_eq!(no_sys, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
    assert_eq!(t.sha256().len(), 64);
}

#[test]
fn hermes_tool_use_template_is_picked_with_tools() {
    let t =
        ChatTemplate::from_tokenizer_config_file(&fixture("hermes_tool_use_tokenizer_config.json"))
            .unwrap();
    let msgs = [Message::new("user", "  What's AAPL at?  ")];
    let plain = t.render(&msgs, None, true).unwrap();
    assert_eq!(
        plain,
        "<s><|im_start|>user\n  What's AAPL at?  <|im_end|>\n<|im_start|>assistant\n"
    );
    let tools: serde_json::Value = serde_json::from_str(r#"[{"type": "function", "function": {"name": "get_stock_price", "description": "d", "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}, "n": {"type": "integer"}}, "required": ["symbol"]}}}]"#).unwrap();
    let with_tools = t.render(&msgs, Some(&tools), true).unwrap();
    assert!(
        with_tools.starts_with("<s><|im_start|>system\nYou are a function calling AI model."),
        "{with_tools}"
    );
    assert!(
        with_tools.contains("# GET_STOCK_PRICE(symbol: str, n: int)"),
        "{with_tools}"
    );
    assert!(
        with_tools.contains("\"name\":\"get_stock_price\"")
            || with_tools.contains("\"name\": \"get_stock_price\""),
        "{with_tools}"
    );
    assert!(
        with_tools
            .ends_with("<|im_start|>user\nWhat's AAPL at?<|im_end|>\n<|im_start|>assistant\n"),
        "{with_tools}"
    );
    // raise_exception surfaces as an error
    let err = t
        .render(&[Message::new("robot", "x")], Some(&tools), true)
        .unwrap_err();
    assert!(err.to_string().contains("Unknown role: robot"), "{err}");
    // the script tokenizer recognises the rendered special tokens
    let tok = byte_tokenizer();
    let ids = tok.encode(plain.as_str(), false).unwrap();
    assert_eq!(ids.get_ids()[0], tok.token_to_id("<s>").unwrap());
}
