//! IFEval (google-research `instruction_following_eval`) judged as lm-evaluation-harness 0.4's
//! `ifeval` task does (`lm_eval/tasks/ifeval/utils.py`): every instruction of a prompt checked on
//! the response (strict) and on eight variants of it (loose), and the four metrics
//! `prompt_level_strict_acc`, `inst_level_strict_acc`, `prompt_level_loose_acc`,
//! `inst_level_loose_acc`, where the prompt-level ones are means over prompts and the
//! instruction-level ones means over all instructions of all prompts (`agg_inst_level_acc`).
//!
//! Sentence counting is NLTK Punkt with the English model ([`punkt`]); word tokenization for
//! `capital_word_frequency` is `nltk.word_tokenize` ([`treebank`]); language identification is
//! langdetect ([`lang`]).
pub mod checks;
pub mod lang;
pub mod punkt;
pub mod py;
pub mod pyjson;
pub mod treebank;

use crate::error::{Error, Result};
use checks::Instruction;
use serde::Serialize;
use serde_json::Value;

/// The verdict on one instruction of a prompt.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstructionVerdict {
    pub id: String,
    pub strict: bool,
    pub loose: bool,
    /// Why the strict check failed (what was measured); `None` when it passed.
    pub reason: Option<String>,
}

/// The verdict on one IFEval prompt.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IfevalVerdict {
    pub key: i64,
    pub instructions: Vec<InstructionVerdict>,
    /// `follow_all_instructions` of the strict test.
    pub prompt_strict: bool,
    /// `follow_all_instructions` of the loose test.
    pub prompt_loose: bool,
}

impl IfevalVerdict {
    /// The first failing instruction's id and reason, for failure breakdowns.
    pub fn failure(&self) -> Option<(&str, &str)> {
        self.instructions
            .iter()
            .find(|i| !i.strict)
            .map(|i| (i.id.as_str(), i.reason.as_deref().unwrap_or("")))
    }
}

/// A parsed IFEval row (`key`, `prompt`, `instruction_id_list`, `kwargs`).
#[derive(Debug, Clone)]
pub struct Prompt {
    pub key: i64,
    pub prompt: String,
    pub ids: Vec<String>,
    pub instructions: Vec<Instruction>,
}

impl Prompt {
    /// Builds the instructions of a row, as in google/IFEval's `input_data.jsonl` or the hub's
    /// parquet (where every kwargs object carries every key, the unused ones null).
    pub fn from_row(row: &Value) -> Result<Self> {
        let bad = |m: &str| {
            Error::task(
                "ifeval",
                format!("row {}: {m}", row.get("key").unwrap_or(&Value::Null)),
            )
        };
        let key = row
            .get("key")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no integer key"))?;
        let prompt = row
            .get("prompt")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no prompt"))?
            .to_string();
        let ids: Vec<String> = row
            .get("instruction_id_list")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no instruction_id_list"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("a non-string instruction id"))
            })
            .collect::<Result<_>>()?;
        let kwargs = row
            .get("kwargs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no kwargs list"))?;
        if kwargs.len() != ids.len() {
            return Err(bad(&format!(
                "{} instruction ids but {} kwargs",
                ids.len(),
                kwargs.len()
            )));
        }
        let empty = serde_json::Map::new();
        let instructions = ids
            .iter()
            .zip(kwargs)
            .map(|(id, kw)| Instruction::build(id, kw.as_object().unwrap_or(&empty)))
            .collect::<Result<_>>()?;
        Ok(Prompt {
            key,
            prompt,
            ids,
            instructions,
        })
    }

    /// `test_instruction_following_strict` and `_loose` on one response.
    pub fn judge(&self, response: &str) -> IfevalVerdict {
        let variants = loose_variants(response);
        let instructions: Vec<InstructionVerdict> = self
            .ids
            .iter()
            .zip(&self.instructions)
            .map(|(id, ins)| {
                let (strict, reason) = if py::strip(response).is_empty() {
                    (false, "empty response".to_string())
                } else {
                    ins.check(response)
                };
                let loose = strict
                    || variants
                        .iter()
                        .skip(1)
                        .any(|r| !py::strip(r).is_empty() && ins.check(r).0);
                InstructionVerdict {
                    id: id.clone(),
                    strict,
                    loose,
                    reason: (!strict).then_some(reason),
                }
            })
            .collect();
        IfevalVerdict {
            key: self.key,
            prompt_strict: instructions.iter().all(|i| i.strict),
            prompt_loose: instructions.iter().all(|i| i.loose),
            instructions,
        }
    }
}

/// The eight responses of `test_instruction_following_loose`, in its order: the response, with
/// `*` removed, without its first line, without its last line, without both, and the last
/// three with `*` removed.
pub fn loose_variants(response: &str) -> [String; 8] {
    let lines: Vec<&str> = response.split('\n').collect();
    let join = |ls: &[&str]| py::strip(&ls.join("\n")).to_string();
    let n = lines.len();
    let first = join(&lines[1.min(n)..]);
    let last = join(&lines[..n.saturating_sub(1)]);
    let both = if n >= 2 {
        join(&lines[1..n - 1])
    } else {
        String::new()
    };
    let star = |s: &str| s.replace('*', "");
    [
        response.to_string(),
        star(response),
        first.clone(),
        last.clone(),
        both.clone(),
        star(&first),
        star(&last),
        star(&both),
    ]
}

/// Judges one IFEval row against one response.
pub fn judge(row: &Value, response: &str) -> Result<IfevalVerdict> {
    Ok(Prompt::from_row(row)?.judge(response))
}

/// The four lm-eval metrics over a set of verdicts, with the stderr lm-eval reports (the mean's
/// sample stderr for the prompt-level ones; none for the instruction-level ones, whose
/// aggregation is a custom function).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IfevalMetrics {
    pub prompt_level_strict_acc: f64,
    pub prompt_level_strict_acc_stderr: f64,
    pub inst_level_strict_acc: f64,
    pub prompt_level_loose_acc: f64,
    pub prompt_level_loose_acc_stderr: f64,
    pub inst_level_loose_acc: f64,
    pub prompts: usize,
    pub instructions: usize,
}

impl IfevalMetrics {
    pub fn aggregate(verdicts: &[IfevalVerdict]) -> Self {
        use crate::metrics::{mean, mean_stderr};
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        let ps: Vec<f64> = verdicts.iter().map(|v| b(v.prompt_strict)).collect();
        let pl: Vec<f64> = verdicts.iter().map(|v| b(v.prompt_loose)).collect();
        let is: Vec<f64> = verdicts
            .iter()
            .flat_map(|v| v.instructions.iter().map(|i| b(i.strict)))
            .collect();
        let il: Vec<f64> = verdicts
            .iter()
            .flat_map(|v| v.instructions.iter().map(|i| b(i.loose)))
            .collect();
        IfevalMetrics {
            prompt_level_strict_acc: mean(&ps),
            prompt_level_strict_acc_stderr: mean_stderr(&ps),
            inst_level_strict_acc: mean(&is),
            prompt_level_loose_acc: mean(&pl),
            prompt_level_loose_acc_stderr: mean_stderr(&pl),
            inst_level_loose_acc: mean(&il),
            prompts: verdicts.len(),
            instructions: is.len(),
        }
    }
}
