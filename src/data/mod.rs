//! Where dataset rows come from: a local mirror laid out like the hub
//! (`datasets/<org>/<name>/<config>/<split>-*.parquet`), or the Hugging Face hub through `hf-hub`
//! (offline: only its cache when `HF_HUB_OFFLINE=1`).
pub mod parquet;
pub mod pyrandom;
pub mod select;

pub use select::{DocOrder, DocSelection};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Environment variable naming the local mirror (same as `--data-dir`).
pub const DATA_DIR_ENV: &str = "HERMES_EVAL_DATA_DIR";

/// A dataset split: hub id, config (`default` when the dataset has none) and split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    pub path: String,
    #[serde(default = "default_config")]
    pub config: String,
    pub split: String,
}

fn default_config() -> String {
    "default".into()
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.path, self.config, self.split)
    }
}

/// Where to look for datasets.
#[derive(Debug, Clone)]
pub struct DataSource {
    mirror: Option<PathBuf>,
    offline: bool,
    cache: hf_hub::Cache,
}

/// A boolean environment variable the way huggingface_hub reads one: `1`, `true`, `yes` or `on`
/// (any case) is set, anything else (or unset) is not.
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

impl DataSource {
    /// `mirror` (from `--data-dir`) wins over `HERMES_EVAL_DATA_DIR`. The hub side reads
    /// `HF_HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE`.
    pub fn new(mirror: Option<PathBuf>) -> Self {
        let mirror = mirror.or_else(|| {
            std::env::var_os(DATA_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        DataSource {
            mirror,
            offline: env_flag("HF_HUB_OFFLINE"),
            cache: hf_hub::Cache::from_env(),
        }
    }

    /// A source that reads only the given mirror (never the hub).
    pub fn mirror_only(mirror: PathBuf) -> Self {
        DataSource {
            mirror: Some(mirror),
            offline: true,
            cache: hf_hub::Cache::new(PathBuf::from("/nonexistent")),
        }
    }

    pub fn mirror(&self) -> Option<&Path> {
        self.mirror.as_deref()
    }

    pub fn offline(&self) -> bool {
        self.offline
    }

    /// The parquet files of a split, in name order. Mirror first, then the hub (cache only when
    /// offline). The error is one line listing every place looked at.
    pub fn locate(&self, ds: &DatasetRef) -> Result<Vec<PathBuf>> {
        let mut tried = Vec::new();
        if let Some(m) = &self.mirror {
            let dir = m.join("datasets").join(&ds.path);
            let files = glob_prefix(&dir.join(&ds.config), &format!("{}-", ds.split));
            if !files.is_empty() {
                return Ok(files);
            }
            tried.push(format!(
                "no file matching {}/{}-*.parquet under {} (mirror)",
                ds.config,
                ds.split,
                dir.display()
            ));
        }
        match self.in_cache(ds) {
            Some(files) => return Ok(files),
            None => tried.push(format!(
                "not in the hub cache {} (looked for {}/{}-*.parquet at main and {}/{}/*.parquet at refs/convert/parquet)",
                self.cache.path().join(hf_hub::Repo::dataset(ds.path.clone()).folder_name()).display(),
                ds.config,
                ds.split,
                ds.config,
                ds.split
            )),
        }
        if self.offline {
            tried.push(
                "HF_HUB_OFFLINE is set, the hub was not asked: unset HF_HUB_OFFLINE to download it, or pass --data-dir <mirror>"
                    .into(),
            );
        } else {
            match self.on_hub(ds) {
                Ok(files) => return Ok(files),
                Err(e) => tried.push(format!(
                    "hub: {e} (check HF_ENDPOINT and the network, or pass --data-dir <mirror>)"
                )),
            }
        }
        Err(Error::data(ds, tried.join(" — ")))
    }

    fn in_cache(&self, ds: &DatasetRef) -> Option<Vec<PathBuf>> {
        let folder = self
            .cache
            .path()
            .join(hf_hub::Repo::dataset(ds.path.clone()).folder_name());
        for (rev, sub, prefix) in [
            ("main", ds.config.clone(), format!("{}-", ds.split)),
            (
                "refs/convert/parquet",
                format!("{}/{}", ds.config, ds.split),
                String::new(),
            ),
        ] {
            let Ok(hash) = std::fs::read_to_string(folder.join("refs").join(rev)) else {
                continue;
            };
            let snap = folder.join("snapshots").join(hash.trim());
            let files = glob_prefix(&snap.join(sub), &prefix);
            if !files.is_empty() {
                return Some(files);
            }
        }
        None
    }

    fn on_hub(&self, ds: &DatasetRef) -> std::result::Result<Vec<PathBuf>, String> {
        use hf_hub::api::sync::ApiBuilder;
        use hf_hub::{Repo, RepoType};
        let api = ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| e.to_string())?;
        let mut errs = Vec::new();
        for (rev, prefix) in [
            ("main", format!("{}/{}-", ds.config, ds.split)),
            (
                "refs/convert/parquet",
                format!("{}/{}/", ds.config, ds.split),
            ),
        ] {
            let repo = api.repo(Repo::with_revision(
                ds.path.clone(),
                RepoType::Dataset,
                rev.to_string(),
            ));
            match repo.info() {
                Ok(info) => {
                    let mut names: Vec<String> = info
                        .siblings
                        .into_iter()
                        .map(|s| s.rfilename)
                        .filter(|f| {
                            f.starts_with(&prefix)
                                && f.ends_with(".parquet")
                                && !f[prefix.len()..].contains('/')
                        })
                        .collect();
                    names.sort();
                    if names.is_empty() {
                        errs.push(format!("no {prefix}*.parquet at revision {rev}"));
                        continue;
                    }
                    return names
                        .iter()
                        .map(|n| repo.get(n).map_err(|e| format!("{n}@{rev}: {e}")))
                        .collect();
                }
                Err(e) => errs.push(format!("revision {rev}: {e}")),
            }
        }
        Err(errs.join("; "))
    }

    /// All rows of a split, in dataset order. `required` columns must be present.
    pub fn rows(&self, ds: &DatasetRef, required: &[String]) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        for f in self.locate(ds)? {
            rows.extend(parquet::read_rows(&f, required)?);
        }
        Ok(rows)
    }

    /// Row count of a split, from the parquet footers (no row is decoded).
    pub fn num_rows(&self, ds: &DatasetRef) -> Result<usize> {
        self.locate(ds)?.iter().map(|f| parquet::num_rows(f)).sum()
    }

    /// The rows at `indices` (positions in the split, files in name order), in the order given.
    /// Only those rows are decoded. `required` columns must be present in every file.
    pub fn rows_at(
        &self,
        ds: &DatasetRef,
        required: &[String],
        indices: &[usize],
    ) -> Result<Vec<Value>> {
        let mut wanted: Vec<usize> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found: std::collections::HashMap<usize, Value> =
            std::collections::HashMap::with_capacity(wanted.len());
        let mut start = 0usize;
        for f in self.locate(ds)? {
            let n = parquet::num_rows(&f)?;
            let lo = wanted.partition_point(|&i| i < start);
            let hi = wanted.partition_point(|&i| i < start + n);
            let local: Vec<usize> = wanted[lo..hi].iter().map(|&i| i - start).collect();
            for (i, row) in wanted[lo..hi]
                .iter()
                .zip(parquet::read_rows_at(&f, required, &local)?)
            {
                found.insert(*i, row);
            }
            start += n;
        }
        indices
            .iter()
            .map(|i| {
                found.get(i).cloned().ok_or_else(|| {
                    Error::data(
                        ds,
                        format!("row {i} requested but the split has {start} rows"),
                    )
                })
            })
            .collect()
    }
}

/// Files `dir/<prefix>*.parquet`, sorted by name.
fn glob_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".parquet"))
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn mirror() -> Option<PathBuf> {
        let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/hub"));
        if p.is_dir() {
            Some(p)
        } else {
            eprintln!("note: {} absent, skipping mirror test", p.display());
            None
        }
    }

    fn arc() -> DatasetRef {
        DatasetRef {
            path: "allenai/ai2_arc".into(),
            config: "ARC-Easy".into(),
            split: "test".into(),
        }
    }

    #[test]
    fn mirror_reads_rows_with_nested_columns() {
        let Some(m) = mirror() else { return };
        let ds = DataSource::mirror_only(m);
        let rows = ds
            .rows(&arc(), &["question".into(), "choices".into()])
            .unwrap();
        assert_eq!(rows.len(), 2376);
        let r = &rows[0];
        assert!(r["question"]
            .as_str()
            .unwrap()
            .starts_with("Which statement best explains"));
        assert_eq!(r["choices"]["label"][0], "A");
        assert_eq!(r["answerKey"], "A");
    }

    #[test]
    fn missing_mirror_file_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let ds = DataSource::mirror_only(dir.path().to_path_buf());
        let e = ds.locate(&arc()).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("dataset allenai/ai2_arc/ARC-Easy/test: no file matching ARC-Easy/test-*.parquet under "), "{e}");
        assert!(e.contains("(mirror)"), "{e}");
    }

    fn write_parquet(path: &Path) {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![
            Field::new("question", DataType::Utf8, false),
            Field::new("label", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["q0", "q1"])),
                Arc::new(Int64Array::from(vec![0, 1])),
            ],
        )
        .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        let mut w = ::parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn missing_column_names_column_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir
            .path()
            .join("datasets/x/y/default/test-00000-of-00001.parquet");
        write_parquet(&f);
        let ds = DataSource::mirror_only(dir.path().to_path_buf());
        let d = DatasetRef {
            path: "x/y".into(),
            config: "default".into(),
            split: "test".into(),
        };
        let rows = ds.rows(&d, &["question".into()]).unwrap();
        assert_eq!(rows[1]["question"], "q1");
        assert_eq!(rows[1]["label"], 1);
        let e = ds.rows(&d, &["passage".into()]).unwrap_err().to_string();
        assert!(!e.contains('\n'));
        assert!(
            e.contains("missing column `passage`") && e.contains("test-00000-of-00001.parquet"),
            "{e}"
        );
    }

    /// Rows 0..n written as two files of several small row groups each (`q<i>`, label i).
    fn write_split(dir: &Path, sizes: &[usize]) -> DataSource {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![
            Field::new("question", DataType::Utf8, false),
            Field::new("label", DataType::Int64, false),
        ]));
        let mut start = 0i64;
        for (k, &n) in sizes.iter().enumerate() {
            let ids: Vec<i64> = (start..start + n as i64).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(
                        ids.iter().map(|i| format!("q{i}")).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(ids.clone())),
                ],
            )
            .unwrap();
            let path = dir.join(format!(
                "datasets/x/y/default/test-{k:05}-of-{:05}.parquet",
                sizes.len()
            ));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let props = ::parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(7))
                .build();
            let f = std::fs::File::create(&path).unwrap();
            let mut w =
                ::parquet::arrow::ArrowWriter::try_new(f, schema.clone(), Some(props)).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            start += n as i64;
        }
        DataSource::mirror_only(dir.to_path_buf())
    }

    #[test]
    fn selected_rows_across_row_groups_and_files_come_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let ds = write_split(dir.path(), &[30, 12]);
        let d = DatasetRef {
            path: "x/y".into(),
            config: "default".into(),
            split: "test".into(),
        };
        assert_eq!(ds.num_rows(&d).unwrap(), 42);
        let all = ds.rows(&d, &["question".into()]).unwrap();
        assert_eq!(all.len(), 42);
        // Rows from several row groups of both files, out of order, the last row included.
        let pick = [41, 0, 13, 6, 7, 29, 30, 20, 14];
        let got = ds.rows_at(&d, &["question".into()], &pick).unwrap();
        let want: Vec<Value> = pick.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(got, want);
        assert_eq!(got[0]["question"], "q41");
        assert!(ds.rows_at(&d, &[], &[]).unwrap().is_empty());
        let e = ds.rows_at(&d, &[], &[3, 42]).unwrap_err().to_string();
        assert!(e.contains("row 42") && e.contains("42 rows"), "{e}");
        let e = ds
            .rows_at(&d, &["passage".into()], &[1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing column `passage`"), "{e}");
    }

    #[test]
    fn offline_hub_cache_main_and_convert_branch() {
        // One test touches the process environment, so both layouts are checked here.
        let home = tempfile::tempdir().unwrap();
        let hub = home.path().join("hub");
        let repo = hub.join("datasets--org--main_layout");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        write_parquet(&repo.join("snapshots/abc123/cfg/validation-00000-of-00001.parquet"));
        let repo2 = hub.join("datasets--org--converted");
        std::fs::create_dir_all(repo2.join("refs/refs/convert")).unwrap();
        std::fs::write(repo2.join("refs/refs/convert/parquet"), "def456\n").unwrap();
        write_parquet(&repo2.join("snapshots/def456/cfg/validation/0000.parquet"));

        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let ds = DataSource::new(None);
        std::env::remove_var("HF_HUB_OFFLINE");
        assert!(ds.offline());
        let a = DatasetRef {
            path: "org/main_layout".into(),
            config: "cfg".into(),
            split: "validation".into(),
        };
        assert_eq!(ds.rows(&a, &["question".into()]).unwrap().len(), 2);
        let b = DatasetRef {
            path: "org/converted".into(),
            config: "cfg".into(),
            split: "validation".into(),
        };
        assert_eq!(ds.rows(&b, &["label".into()]).unwrap().len(), 2);
        let c = DatasetRef {
            path: "org/absent".into(),
            config: "cfg".into(),
            split: "test".into(),
        };
        let e = ds.rows(&c, &[]).unwrap_err().to_string();
        assert!(!e.contains('\n'));
        assert!(
            e.contains("HF_HUB_OFFLINE") && e.contains("datasets--org--absent"),
            "{e}"
        );
    }
}
