//! One writer per output directory: an exclusive advisory lock on `<dir>/.lock`, held for as
//! long as a run (or `merge`, `report`) writes there. A second writer is refused at once with
//! the holder's pid; the lock dies with its process, so a run killed with SIGKILL leaves a
//! `.lock` file that blocks nobody.
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock of an output directory; released when dropped or when the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Create `dir` if needed and lock it for writing by `what` (the command, for the holder's
    /// line in the lock file), or fail naming the directory and the pid that holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.lines().next().unwrap_or("").trim().to_string();
                let holder = if holder.is_empty() {
                    "another hermes-eval process".to_string()
                } else {
                    holder
                };
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::file(&path, e)),
        }
        // Ours now: say who holds it (a stale holder's line is overwritten).
        let me = format!("pid {} (hermes-eval {what})\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()))
            .map_err(|e| Error::file(&path, e))?;
        Ok(DirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
