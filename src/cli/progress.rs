//! The progress bar of a fit: iteration, lower bound, its change, iterations per second.

use std::time::{Duration, Instant};

use emgpu::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Ui;

/// A progress bar on stderr (drawn only when stderr is a terminal and not `--quiet`).
pub struct FitProgress {
    bar: Option<ProgressBar>,
    label: String,
    n_init: usize,
    init: usize,
    init_started: Instant,
}

impl FitProgress {
    /// A bar for a fit of at most `max_iter` iterations per initialization, `n_init` of them.
    pub fn new(ui: &Ui, label: impl Into<String>, max_iter: usize, n_init: usize) -> Self {
        let label = label.into();
        let bar = ui.progress_bars().then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(max_iter as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:24}] {pos:>4}/{len} it  {msg}  {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            label,
            n_init,
            init: 0,
            init_started: Instant::now(),
        }
    }

    /// Called by the fit after every iteration.
    pub fn update(&mut self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        if p.init != self.init || p.iteration == 1 {
            self.init = p.init;
            self.init_started = Instant::now();
            if self.n_init > 1 {
                bar.set_prefix(format!(
                    "{} init {}/{}",
                    self.label,
                    p.init + 1,
                    self.n_init
                ));
            }
        }
        let rate = p.iteration as f64 / self.init_started.elapsed().as_secs_f64().max(1e-9);
        let change = if p.change.is_finite() {
            format!("{:+.2e}", p.change)
        } else {
            "—".to_string()
        };
        bar.set_position(p.iteration as u64);
        bar.set_message(format!(
            "lower bound {:.6}  change {change}  {rate:.1} it/s",
            p.lower_bound
        ));
    }

    /// Removes the bar (the caller prints the summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for FitProgress {
    fn drop(&mut self) {
        self.finish();
    }
}
