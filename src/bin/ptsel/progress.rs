//! Progress bars on a terminal; silent when stderr is not a terminal or with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// One bar per stage, replaced when the stage name changes.
pub struct Bars {
    enabled: bool,
    current: Mutex<Option<(String, ProgressBar)>>,
}

impl Bars {
    /// Bars drawn on stderr if it is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        Bars {
            enabled: !quiet && std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    /// Report `done` of `total` for `stage`.
    pub fn update(&self, stage: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if cur.as_ref().is_none_or(|(s, _)| s != stage) {
            if let Some((_, old)) = cur.take() {
                old.finish();
            }
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(stage.to_string());
            *cur = Some((stage.to_string(), bar));
        }
        if let Some((_, bar)) = cur.as_ref() {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Finish the current bar.
    pub fn finish(&self) {
        if let Ok(mut cur) = self.current.lock() {
            if let Some((_, bar)) = cur.take() {
                bar.finish();
            }
        }
    }
}
