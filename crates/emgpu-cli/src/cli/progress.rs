//! The progress bar of a fit: iteration, lower bound (k-means: inertia and center shift), its
//! change, iterations per second; with restarts, a line per finished restart above the bar.

use std::time::{Duration, Instant};

use emgpu::Progress;
use emgpu::models::kmeans::KMeansProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Ui, num};

/// A progress bar on stderr (drawn only when stderr is a terminal and not `--quiet`).
pub struct FitProgress {
    bar: Option<ProgressBar>,
    label: String,
    n_init: usize,
    init: usize,
    init_started: Instant,
    /// The last report of the current restart: (iteration, what it reached, e.g. "lower bound -4.2").
    last: Option<(usize, String)>,
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
            // The initialization (k-means for a Gaussian mixture's default) runs before the first
            // iteration is reported.
            bar.set_message("initializing");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            label,
            n_init,
            init: 0,
            init_started: Instant::now(),
            last: None,
        }
    }

    /// Called by a Gaussian mixture fit after every iteration.
    pub fn update(&mut self, p: &Progress) {
        if self.bar.is_none() {
            return;
        }
        let change = if p.change.is_finite() {
            format!("{:+.2e}", p.change)
        } else {
            "—".to_string()
        };
        let rate = self.step(p.init, p.iteration);
        self.show(
            p.iteration,
            format!("lower bound {:.6}  change {change}  {rate}", p.lower_bound),
            format!("lower bound {:.6}", p.lower_bound),
        );
    }

    /// Called by a k-means fit after every iteration.
    pub fn update_kmeans(&mut self, p: &KMeansProgress) {
        if self.bar.is_none() {
            return;
        }
        let rate = self.step(p.init, p.iteration);
        self.show(
            p.iteration,
            format!(
                "inertia {}  center shift {:.2e}  {rate}",
                num(p.inertia),
                p.center_shift
            ),
            format!("inertia {} at its last assignment", num(p.inertia)),
        );
    }

    /// Notes a new restart (printing the one that ended) and returns the rate of iterations, as
    /// measured between this report and the previous one of the same restart (none at the
    /// first: a rate from one tick is meaningless).
    fn step(&mut self, init: usize, iteration: usize) -> String {
        if init != self.init || iteration == 1 {
            if init != self.init {
                self.print_restart();
            }
            self.init = init;
            self.init_started = Instant::now();
            if self.n_init > 1
                && let Some(bar) = &self.bar
            {
                bar.set_prefix(format!("{} init {}/{}", self.label, init + 1, self.n_init));
            }
        }
        // `init_started` is the report of this restart's first iteration.
        if iteration > 1 {
            let seconds = self.init_started.elapsed().as_secs_f64().max(1e-9);
            format!("{:.1} it/s", (iteration - 1) as f64 / seconds)
        } else {
            "— it/s".to_string()
        }
    }

    fn show(&mut self, iteration: usize, message: String, reached: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(iteration as u64);
            bar.set_message(message);
        }
        self.last = Some((iteration, reached));
    }

    /// With restarts, one line above the bar for the restart that just ended.
    fn print_restart(&mut self) {
        if let (Some(bar), Some((iterations, reached))) = (&self.bar, self.last.take())
            && self.n_init > 1
        {
            bar.println(format!(
                "{} init {}/{}: {reached} after {iterations} iterations",
                self.label,
                self.init + 1,
                self.n_init
            ));
        }
    }

    /// Runs `fit` with a bar (label, iterations per initialization, initializations) and times
    /// it: the fit's result and its wall-clock seconds, the bar finished.
    pub fn timed<M, E>(
        ui: &Ui,
        label: impl Into<String>,
        max_iter: usize,
        n_init: usize,
        fit: impl FnOnce(&mut FitProgress) -> Result<M, E>,
    ) -> Result<(M, f64), E> {
        let mut bar = FitProgress::new(ui, label, max_iter, n_init);
        let started = Instant::now();
        let model = fit(&mut bar)?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish();
        Ok((model, seconds))
    }

    /// Prints the last restart's line and removes the bar (the caller prints the summary).
    pub fn finish(&mut self) {
        self.print_restart();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for FitProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
