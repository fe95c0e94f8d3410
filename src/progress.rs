//! Progress on stderr: a bar with ETA on a terminal, plain lines (every ~10 %) otherwise.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// A spinner while something loads (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A progress bar with ETA on a terminal; plain lines (every ~10 %) otherwise.
pub struct Progress {
    bar: ProgressBar,
    label: String,
    total: usize,
    plain: bool,
    last: usize,
    start: Instant,
}

impl Progress {
    pub fn new(label: &str, total: usize) -> Self {
        let plain = !std::io::stderr().is_terminal();
        let bar = if plain {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {pos}/{len} docs  {per_sec}  ETA {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self {
            bar,
            label: label.into(),
            total,
            plain,
            last: 0,
            start: Instant::now(),
        }
    }
    pub fn set(&mut self, done: usize) {
        self.bar.set_position(done as u64);
        if self.plain
            && (done == self.total
                || done * 10 / self.total.max(1) > self.last * 10 / self.total.max(1))
        {
            let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total - done) as f64 / rate.max(1e-9);
            eprintln!(
                "{}: {done}/{} docs ({rate:.1} docs/s, ETA {eta:.0}s)",
                self.label, self.total
            );
        }
        self.last = done;
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
