//! System prompts exactly as TASKS_SPEC §7.2 (function calling) and §8 (JSON mode).
use crate::py::value::{py_repr, PyValue};
use serde::{Deserialize, Serialize};

/// Key order of the pydantic `FunctionCall` JSON schema printed into the prompt (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum SchemaOrder {
    /// pydantic v1 (what the 2024-02 logs show; default).
    #[default]
    V1,
    /// pydantic v2 (F pins 2.7.4 from June 2024).
    V2,
}

pub const FUNCTION_CALL_SCHEMA_V1: &str = "{'title': 'FunctionCall', 'type': 'object', 'properties': {'arguments': {'title': 'Arguments', 'type': 'object'}, 'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name']}";
pub const FUNCTION_CALL_SCHEMA_V2: &str = "{'properties': {'arguments': {'title': 'Arguments', 'type': 'object'}, 'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name'], 'title': 'FunctionCall', 'type': 'object'}";

/// The card-version system prompt (§7.2) for a raw `tools` JSON string. No trailing newline.
pub fn fc_system_prompt(tools: &str, order: SchemaOrder) -> String {
    let schema = match order {
        SchemaOrder::V1 => FUNCTION_CALL_SCHEMA_V1,
        SchemaOrder::V2 => FUNCTION_CALL_SCHEMA_V2,
    };
    let tools = tools.replace('\n', " ");
    format!(
        "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. \
You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. \
Here are the available tools: <tools> {tools} </tools> \
Use the following pydantic model json schema for each tool call you will make: {schema} \
For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n\
<tool_call>\n{{'arguments': <args-dict>, 'name': <function-name>}}\n</tool_call>"
    )
}

/// §8 system prompt form of NousResearch/json-mode-eval rows (schema as Python dict repr).
pub fn json_system_prompt(schema: &serde_json::Value) -> String {
    json_system_prompt_raw(&py_repr(&PyValue::from_json(schema)))
}

/// The same system prompt around schema text that is shown as it is.
pub fn json_system_prompt_raw(schema_text: &str) -> String {
    format!(
        "You are a helpful assistant that answers in JSON. Here's the json schema you must adhere to:\n<schema>\n{schema_text}\n</schema>\n"
    )
}

/// Generic user turn for schema-only datasets (maskbench / JSONSchemaBench): there is no
/// original prompt, so this is a substitute and reported as such.
pub const GENERIC_JSON_USER_TURN: &str = "Generate a JSON object that adheres to the schema.";
