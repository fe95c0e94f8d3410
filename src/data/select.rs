//! Which documents of a task are evaluated, and in which order: `--doc-order` and `--limit`.
//!
//! A task's document list is its split's rows in dataset order (the mirror's BigBench tables are
//! already the harness's de-duplicated `unique(examples)` list, so every task's list is exactly
//! the list the card harness builds). The selection is computed from the row count alone, so only
//! the selected rows are ever decoded.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::pyrandom::PyRandom;

/// The seed lm-evaluation-harness 9c89d1fc shuffles every task's documents with
/// (`evaluator.evaluate`: `rnd.seed(42); rnd.shuffle(task_docs)`).
pub const HARNESS_SEED: i128 = 42;

/// Document order, applied before `--limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocOrder {
    /// Dataset order: `--limit N` takes rows 0..N (lm-evaluation-harness 0.4 does the same).
    #[default]
    Dataset,
    /// The card harness's order: Python's `random.Random(42).shuffle` of the document list, so
    /// `--limit N` takes exactly the documents the card harness's own `--limit N` evaluates.
    Harness,
}

impl DocOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            DocOrder::Dataset => "dataset",
            DocOrder::Harness => "harness",
        }
    }
}

impl fmt::Display for DocOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DocOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dataset" => Ok(DocOrder::Dataset),
            "harness" => Ok(DocOrder::Harness),
            other => Err(format!(
                "unknown document order `{other}` (expected `dataset` or `harness`)"
            )),
        }
    }
}

/// Order plus limit: which rows of a task's document list are evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocSelection {
    pub order: DocOrder,
    pub limit: Option<usize>,
}

impl DocSelection {
    pub fn new(order: DocOrder, limit: Option<usize>) -> Self {
        DocSelection { order, limit }
    }

    /// Row indices into a document list of `total` rows, in evaluation order: position `k` of the
    /// result is the document the run reports as `doc_id` k.
    pub fn indices(&self, total: usize) -> Vec<usize> {
        let n = self.limit.map_or(total, |l| l.min(total));
        match self.order {
            DocOrder::Dataset => (0..n).collect(),
            DocOrder::Harness => {
                let mut all: Vec<usize> = (0..total).collect();
                PyRandom::new(HARNESS_SEED).shuffle(&mut all);
                all.truncate(n);
                all
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_order_is_the_first_rows() {
        let s = DocSelection::new(DocOrder::Dataset, Some(3));
        assert_eq!(s.indices(10), vec![0, 1, 2]);
        assert_eq!(s.indices(2), vec![0, 1]);
        assert_eq!(DocSelection::default().indices(4), vec![0, 1, 2, 3]);
    }

    /// The limit cuts the shuffled list, it does not shuffle the first N rows: the card harness's
    /// openbookqa (500 docs) `--limit 10` documents, from `../shared/reference/card-harness`.
    #[test]
    fn harness_order_limits_after_shuffling() {
        let s = DocSelection::new(DocOrder::Harness, Some(10));
        assert_eq!(
            s.indices(500),
            vec![164, 383, 45, 156, 53, 72, 315, 209, 74, 333]
        );
        let all = DocSelection::new(DocOrder::Harness, None).indices(500);
        assert_eq!(&all[..10], &s.indices(500)[..]);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (0..500).collect::<Vec<_>>());
        assert!(DocSelection::new(DocOrder::Harness, Some(5))
            .indices(0)
            .is_empty());
    }

    #[test]
    fn order_names_round_trip() {
        for o in [DocOrder::Dataset, DocOrder::Harness] {
            assert_eq!(o.to_string().parse::<DocOrder>().unwrap(), o);
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        let e = "random".parse::<DocOrder>().unwrap_err();
        assert!(e.contains("`random`") && e.contains("harness"), "{e}");
    }
}
