//! Human output helpers: sizes, and a progress line on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strongroom_repo::archiver::Progress;

/// Bytes in a human unit.
pub fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A progress bar fed by backup counters; drawn only when stderr is a terminal.
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressBar {
    /// Starts drawing `p` unless quiet or not on a terminal.
    pub fn start(p: &Arc<Progress>, quiet: bool) -> ProgressBar {
        if quiet || !std::io::stderr().is_terminal() {
            return ProgressBar {
                bar: None,
                task: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        let b = bar.clone();
        let p = Arc::clone(p);
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let read = p.bytes_read.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                b.set_message(format!(
                    "{} files, {} read ({}/s), {} unchanged, {} added",
                    p.files.load(Ordering::Relaxed),
                    size(read),
                    size((read as f64 / secs) as u64),
                    size(p.bytes_skipped.load(Ordering::Relaxed)),
                    size(p.bytes_stored.load(Ordering::Relaxed)),
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ProgressBar {
            bar: Some(bar),
            task: Some(task),
        }
    }

    /// Stops drawing.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
