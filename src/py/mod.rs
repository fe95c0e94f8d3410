//! Python semantics the reference harness and its scorers rely on (TASKS_SPEC §1.7), in one
//! place: `str` methods (code-point lengths, `isspace`, `strip`, …) used by task templates and
//! preprocessing, and Python values (`json.loads`, `ast.literal_eval`, `repr`, `==`) used by chat
//! templates (`tojson`) and the tool-call / JSON-mode judges.
pub mod text;
pub mod value;
