//! `emgpu plot` and `fit --plot`: the lower-bound trace of fitted Gaussian mixtures as an SVG
//! (plotters' SVG backend: no system libraries, no font files).
//!
//! Every model is one line. Batch EM: the lower bound of each iteration, which is the mean
//! log-likelihood of the parameters after the iterations before it, at x = the passes over the
//! data those parameters cost (iteration i at x = i − 1). Stepwise EM: the full-data lower
//! bound after each evaluated pass p, at x = p. With `--x seconds` the x axis is the wall time
//! at which those parameters were ready (the model file's `trace_seconds`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use emgpu::FittedGmm;
use emgpu::data::{check_output_path, write_text_atomic};
use plotters::prelude::*;

use super::{AnyModel, CliError, Ui, load_any_model};

/// What the x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum XAxis {
    /// Passes over the data the parameters cost (batch: one per iteration).
    #[default]
    Passes,
    /// Wall seconds of the fit.
    Seconds,
}

/// `emgpu plot --model A.json [--model B.json ...] --output trace.svg`
#[derive(Debug, Args)]
#[command(after_help = "\
Draws the lower bound (mean log-likelihood per sample) of each fitted Gaussian mixture on the
same axes: batch EM per iteration, stepwise EM (fit --online) per evaluated pass. Fit the online
model with --plot (or --eval-every-pass) to have its lower bound after every pass.

Example:
  emgpu fit --input X.npy -k 16 --init init.json --tol 1e-4 --max-iter 200 --output batch.json
  emgpu fit --input X.npy -k 16 --init init.json --online --passes 4 --eval-every-pass --output online.json
  emgpu plot --model batch.json --model online.json --output online_vs_batch.svg")]
pub struct PlotCmd {
    /// A Gaussian mixture model file written by `emgpu fit` (repeat for several lines).
    #[arg(long, required = true, value_name = "MODEL.json")]
    model: Vec<PathBuf>,

    /// The SVG file to write (atomically).
    #[arg(long, short, value_name = "PLOT.svg")]
    output: PathBuf,

    /// The x axis.
    #[arg(long, value_enum, default_value_t = XAxis::Passes)]
    x: XAxis,

    /// The title of the plot [default: "lower bound per pass over the data"].
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,

    /// The bottom of the y axis (points below are left out): the first iterations of a batch
    /// fit often lie far below the rest [default: the lowest point].
    #[arg(long, value_name = "Y", allow_negative_numbers = true)]
    y_min: Option<f64>,
}

/// One line of the plot.
pub struct Trace {
    label: String,
    points: Vec<(f64, f64)>,
}

pub fn run(cmd: PlotCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    check_output_path(&cmd.output)?;
    let mut traces = Vec::new();
    for path in &cmd.model {
        let AnyModel::Gmm(model) = load_any_model(path)? else {
            return Err(CliError::usage(format!(
                "{}: not a Gaussian mixture; `emgpu plot` draws the lower bounds of Gaussian mixture fits",
                path.display()
            )));
        };
        let mut trace = trace_of(&model, cmd.x, None);
        if let Some(y) = cmd.y_min {
            trace.points.retain(|p| p.1 >= y);
        }
        traces.push(trace);
    }
    write_svg(&cmd.output, &traces, cmd.x, cmd.title.as_deref())?;
    ui.note(format!(
        "plot: {} line(s) → {}",
        traces.len(),
        cmd.output.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The line of `model` (see the module docs); `label` overrides the one made from the model.
pub fn trace_of(model: &FittedGmm, x: XAxis, label: Option<&str>) -> Trace {
    let lb = model.lower_bound_trace();
    let secs = model.trace_seconds();
    let (default_label, points): (String, Vec<(f64, f64)>) = match model.online() {
        Some(o) => (
            format!(
                "stepwise EM (batch {}, α {})",
                o.options.batch_size, o.options.decay
            ),
            lb.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let at = match x {
                        XAxis::Passes => o.evaluated_passes.get(i).map_or(i + 1, |p| *p) as f64,
                        XAxis::Seconds => secs.get(i).copied().unwrap_or(f64::NAN),
                    };
                    (at, v)
                })
                .collect(),
        ),
        None => (
            "batch EM".to_string(),
            lb.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let at = match (x, i) {
                        (XAxis::Passes, _) => i as f64,
                        (XAxis::Seconds, 0) => 0.0,
                        (XAxis::Seconds, _) => secs.get(i - 1).copied().unwrap_or(f64::NAN),
                    };
                    (at, v)
                })
                .collect(),
        ),
    };
    Trace {
        label: label.map_or(default_label, str::to_string),
        points: points
            .into_iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .collect(),
    }
}

/// Draws `traces` and writes the SVG to `path` atomically.
pub fn write_svg(
    path: &Path,
    traces: &[Trace],
    x: XAxis,
    title: Option<&str>,
) -> Result<(), CliError> {
    let svg = render(traces, x, title)
        .map_err(|e| CliError::error(format!("drawing the plot {}: {e}", path.display())))?;
    write_text_atomic(path, &svg)?;
    Ok(())
}

/// The SVG text of the plot.
fn render(
    traces: &[Trace],
    x: XAxis,
    title: Option<&str>,
) -> Result<String, Box<dyn std::error::Error>> {
    let all = || traces.iter().flat_map(|t| t.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = all().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(px, py)| (a.min(px), b.max(px), c.min(py), d.max(py)),
    );
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    x0 = x0.min(0.0);
    let pad_x = ((x1 - x0) * 0.03).max(1e-9);
    let pad_y = ((y1 - y0) * 0.05).max(1e-6 * y1.abs().max(1.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                title.unwrap_or("lower bound per pass over the data"),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), (y0 - pad_y)..(y1 + pad_y))?;
        chart
            .configure_mesh()
            .x_desc(match x {
                XAxis::Passes => "passes over the data",
                XAxis::Seconds => "wall time (s)",
            })
            .y_desc("lower bound (mean log-likelihood)")
            .max_light_lines(0)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .draw()?;
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, t) in traces.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    t.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(t.label.clone())
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 20, ly)], color.stroke_width(2))
                });
            chart.draw_series(t.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}
