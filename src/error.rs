//! Library error type. Every variant renders as one line that names the cause and where it was found.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("dataset {dataset}: {msg}")]
    Data { dataset: String, msg: String },
    #[error("task {task}: {msg}")]
    Task { task: String, msg: String },
    #[error("model: {0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("merge: {0}")]
    Merge(String),
    #[error("{}: locked by {holder}, which is writing this output directory; wait for it to finish or use another output directory", dir.display())]
    Locked { dir: PathBuf, holder: String },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
    pub fn data(dataset: impl std::fmt::Display, msg: impl std::fmt::Display) -> Self {
        Error::Data {
            dataset: dataset.to_string(),
            msg: msg.to_string(),
        }
    }
    pub fn task(task: impl std::fmt::Display, msg: impl std::fmt::Display) -> Self {
        Error::Task {
            task: task.to_string(),
            msg: msg.to_string(),
        }
    }
    /// `e` as an error about `path`: a model error's message gets the path in front, an error
    /// that already names its file stays as it is.
    pub fn in_file(path: impl Into<PathBuf>, e: Error) -> Self {
        match e {
            Error::Model(msg) => Error::File {
                path: path.into(),
                msg,
            },
            e @ Error::File { .. } => e,
            e => Error::file(path, e),
        }
    }
    pub fn model(msg: impl std::fmt::Display) -> Self {
        Error::Model(msg.to_string())
    }
}
