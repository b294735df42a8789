//! Progress of long CLI work (`users import`, `keys rotate --tenant-data`):
//! a bar when stderr is a terminal, plain lines on stdout otherwise. It only
//! shows; it never decides how work is batched.

use std::io::IsTerminal;

use super::say;

/// Progress of long work: a bar when stderr is a terminal, otherwise a plain
/// line on stdout every tenth of the work (at most one per 1000 rows).
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// What is counted ("users") and what was done to it ("imported").
    unit: &'static str,
    done_verb: &'static str,
    total: u64,
    every: u64,
    printed: std::cell::Cell<u64>,
}

impl Progress {
    pub(super) fn new(total: u64, unit: &'static str, done_verb: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40.cyan/blue}} {{pos}}/{{len}} {unit} {{elapsed_precise}} (eta {{eta}})"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            indicatif::ProgressBar::new(total).with_style(style)
        });
        Self {
            bar,
            unit,
            done_verb,
            total,
            every: (total / 10).max(1000),
            printed: std::cell::Cell::new(0),
        }
    }

    pub(super) fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if done >= self.printed.get().saturating_add(self.every) {
                    self.printed.set(done);
                    say(&format!(
                        "{} {done}/{} {}",
                        self.done_verb, self.total, self.unit
                    ));
                }
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
