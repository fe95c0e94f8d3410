//! Chat templates: the model's own Jinja template (tokenizer_config.json `chat_template`, a string
//! or a list of `{name, template}`; or GGUF `tokenizer.chat_template`; or an override file),
//! rendered with minijinja + pycompat (Python `str` methods), `raise_exception`, `tojson`
//! (transformers' version: `json.dumps(x, ensure_ascii=False)`; `indent` is not supported),
//! `strftime_now`, `bos_token`/`eos_token` and `add_generation_prompt`, with
//! `trim_blocks`/`lstrip_blocks` like transformers. Without a template: ChatML as in the
//! function-calling eval's `chatml.j2` (TASKS_SPEC §7.2, no BOS).
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// F's `chatml.j2` (§7.2).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Where the template came from (recorded in results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    TokenizerConfig,
    Gguf,
    OverrideFile(String),
    ChatmlFallback,
}

/// A chat template with its named variants (`default`, `tool_use`, …).
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    /// (name, source); a plain string template is named `default`.
    variants: Vec<(String, String)>,
    pub source: TemplateSource,
    pub bos_token: String,
    pub eos_token: String,
}

fn token_str(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(o)) => o
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// A single template string (e.g. GGUF `tokenizer.chat_template`).
    pub fn from_string(template: impl Into<String>, bos_token: &str, eos_token: &str) -> Self {
        ChatTemplate {
            variants: vec![("default".into(), template.into())],
            source: TemplateSource::Gguf,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        }
    }

    /// The ChatML fallback (no BOS).
    pub fn chatml(eos_token: &str) -> Self {
        ChatTemplate {
            variants: vec![("default".into(), CHATML_TEMPLATE.into())],
            source: TemplateSource::ChatmlFallback,
            bos_token: String::new(),
            eos_token: eos_token.into(),
        }
    }

    /// From a parsed tokenizer_config.json; `None` when it has no `chat_template`.
    pub fn from_tokenizer_config(cfg: &serde_json::Value) -> Result<Option<Self>> {
        let bos = token_str(cfg.get("bos_token"));
        let eos = token_str(cfg.get("eos_token"));
        let variants = match cfg.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => vec![("default".to_string(), s.clone())],
            Some(serde_json::Value::Array(list)) => {
                let mut v = Vec::new();
                for item in list {
                    let (Some(n), Some(t)) = (
                        item.get("name").and_then(|n| n.as_str()),
                        item.get("template").and_then(|t| t.as_str()),
                    ) else {
                        return Err(Error::Tokenizer(
                            "chat_template list item without name/template".into(),
                        ));
                    };
                    v.push((n.to_string(), t.to_string()));
                }
                v
            }
            Some(other) => {
                return Err(Error::Tokenizer(format!(
                    "unexpected chat_template value {other}"
                )))
            }
        };
        Ok(Some(ChatTemplate {
            variants,
            source: TemplateSource::TokenizerConfig,
            bos_token: bos,
            eos_token: eos,
        }))
    }

    /// Read tokenizer_config.json; falls back to ChatML when it has no template.
    pub fn from_tokenizer_config_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::file(path, e))?;
        match Self::from_tokenizer_config(&cfg)? {
            Some(t) => Ok(t),
            None => Ok(Self::chatml(&token_str(cfg.get("eos_token")))),
        }
    }

    /// An override template file (Jinja text).
    pub fn from_file(path: &Path, bos_token: &str, eos_token: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let mut t = Self::from_string(text, bos_token, eos_token);
        t.source = TemplateSource::OverrideFile(path.display().to_string());
        Ok(t)
    }

    /// The template text used with or without tools (`tool_use` when tools are given and it
    /// exists, else `default`, else the first one).
    pub fn template_text(&self, with_tools: bool) -> &str {
        let pick = |n: &str| {
            self.variants
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, t)| t.as_str())
        };
        (if with_tools { pick("tool_use") } else { None })
            .or_else(|| pick("default"))
            .unwrap_or_else(|| self.variants[0].1.as_str())
    }

    /// sha256 (hex) of the template text used without tools.
    pub fn sha256(&self) -> String {
        Self::sha256_of(self.template_text(false))
    }

    pub fn sha256_of(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// Render `messages` (and `tools`, a JSON array, if given).
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let text = self.template_text(tools.is_some());
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(crate::limits::CHAT_TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |fmt: String| -> String {
            chrono::Local::now().format(&fmt).to_string()
        });
        env.add_filter(
            "tojson",
            |v: minijinja::Value| -> std::result::Result<String, minijinja::Error> {
                let j = serde_json::to_value(&v).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
                })?;
                Ok(crate::py::value::py_json_dumps_unicode(
                    &crate::py::value::PyValue::from_json(&j),
                ))
            },
        );
        crate::limits::no_panic(|| env.add_template("chat", text))
            .map_err(|e| Error::Tokenizer(format!("chat template: {e:#}")))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Tokenizer(format!("chat template: {e:#}")))?;
        let ctx = minijinja::context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        crate::limits::render_bounded("chat template", &tmpl, ctx)
            .map_err(|e| Error::Tokenizer(format!("chat template: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::chatml("<|im_end|>");
        let s = t
            .render(
                &[Message::new("system", "S"), Message::new("user", "U")],
                None,
                true,
            )
            .unwrap();
        assert_eq!(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    }
}
