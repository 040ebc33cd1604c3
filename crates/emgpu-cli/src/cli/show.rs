//! `emgpu show`: what a model file holds, as a table or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emgpu::{CovarianceType, FittedGmm, FittedKMeans};
use serde_json::{Value, json};

use super::{AnyModel, CliError, Ui, load_any_model, num, print_result};

/// `emgpu show MODEL.json [--json] [--full]`
#[derive(Debug, Args)]
#[command(after_help = "\
Gaussian mixture: the covariance type, K, D, the feature names (when the model was fitted on a
CSV), the lower bound, iterations and convergence, then one row per component: its weight, mean
and variances (the diagonal of its covariance; tied: of the shared one; spherical: the one
variance). --full also prints the covariance matrices. k-means: K, D, inertia, iterations and the
cluster centers.
With --json, the last line of stdout is one JSON object:
  {\"model\": \"gmm\", \"n_components\": K, \"n_features\": D, \"covariance_type\": ..., \"weights\": [K],
   \"means\": [K][D], \"variances\": [K][D], \"lower_bound\": ..., \"n_iter\": ..., \"converged\": ...,
   \"feature_names\": [D] or null}   (--full adds \"covariances\" in scikit-learn's shape)
  {\"model\": \"kmeans\", \"n_clusters\": K, \"n_features\": D, \"cluster_centers\": [K][D], \"inertia\": ...,
   \"n_iter\": ..., \"converged\": ..., \"feature_names\": [D] or null}")]
pub struct ShowCmd {
    /// The model file (JSON written by `emgpu fit`: a Gaussian mixture or k-means).
    #[arg(value_name = "MODEL.json")]
    model: PathBuf,

    /// Print one JSON object (the last line of stdout) instead of the table.
    #[arg(long)]
    json: bool,

    /// Gaussian mixtures: also print the covariance matrices.
    #[arg(long)]
    full: bool,

    /// LDA: the vocabulary, one term per line in column order, to name each topic's top terms.
    #[arg(long, value_name = "vocab.txt")]
    vocab: Option<PathBuf>,

    /// LDA: how many top terms (largest λ) to show per topic.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,
}

pub fn run(cmd: ShowCmd, _ui: &Ui) -> Result<ExitCode, CliError> {
    match load_any_model(&cmd.model)? {
        AnyModel::Gmm(m) => {
            let names = m.feature_names().map(<[String]>::to_vec);
            show_gmm(&cmd, &m, names)
        }
        AnyModel::KMeans(m) => {
            let names = m.feature_names().map(<[String]>::to_vec);
            show_kmeans(&cmd, &m, names)
        }
        AnyModel::Hmm(m) => super::hmm::show(&m, cmd.json),
        AnyModel::Lda(m) => super::lda::show(&m, cmd.json, cmd.vocab.as_ref(), cmd.top),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// `null` for NaN (a model made by hand has no lower bound).
fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// The variances of every component `[K][D]`: the diagonal of its covariance.
fn variances(model: &FittedGmm) -> Vec<Vec<f64>> {
    let (k, d) = (model.n_components(), model.n_features());
    let cov = model.params().covariances();
    (0..k)
        .map(|c| {
            (0..d)
                .map(|i| match model.covariance_type() {
                    CovarianceType::Full => cov[c * d * d + i * d + i],
                    CovarianceType::Tied => cov[i * d + i],
                    CovarianceType::Diag => cov[c * d + i],
                    CovarianceType::Spherical => cov[c],
                })
                .collect()
        })
        .collect()
}

/// The columns' names: the feature names, or `x0, x1, ...`.
fn column_names(names: &Option<Vec<String>>, d: usize) -> Vec<String> {
    match names {
        Some(n) if n.len() == d => n.clone(),
        _ => (0..d).map(|i| format!("x{i}")).collect(),
    }
}

/// Prints rows of cells as a left-aligned table.
fn print_table(rows: &[Vec<String>]) -> Result<(), CliError> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|j| {
            rows.iter()
                .filter_map(|r| r.get(j))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        print_result(line.join("  ").trim_end())?;
    }
    Ok(())
}

fn fit_line(n_iter: usize, converged: bool) -> String {
    format!(
        "{n_iter} iterations ({})",
        if converged {
            "converged"
        } else {
            "not converged"
        }
    )
}

fn show_gmm(cmd: &ShowCmd, m: &FittedGmm, names: Option<Vec<String>>) -> Result<(), CliError> {
    let (k, d) = (m.n_components(), m.n_features());
    let weights = m.weights().to_vec();
    let means: Vec<Vec<f64>> = m.means().rows().into_iter().map(|r| r.to_vec()).collect();
    let vars = variances(m);
    if cmd.json {
        let mut doc = json!({
            "model": "gmm",
            "n_components": k,
            "n_features": d,
            "covariance_type": m.covariance_type().name(),
            "weights": weights,
            "means": means,
            "variances": vars,
            "lower_bound": finite(m.lower_bound()),
            "n_iter": m.n_iter(),
            "converged": m.converged(),
            "feature_names": names,
            "n_samples": m.n_train_samples(),
            "bic": m.training_information_criteria().map(|c| c.0),
            "aic": m.training_information_criteria().map(|c| c.1),
        });
        if cmd.full {
            doc["covariances"] =
                serde_json::to_value(nested(&m.covariances())).expect("numbers serialize");
        }
        return print_result(&doc.to_string());
    }
    let cols = column_names(&names, d);
    print_result(&format!(
        "Gaussian mixture (gmm): {k} components, {d} features, covariance {}",
        m.covariance_type()
    ))?;
    if let Some(names) = &names {
        print_result(&format!("features: {}", names.join(", ")))?;
    }
    print_result(&format!(
        "lower bound {}, {}",
        num(m.lower_bound()),
        fit_line(m.n_iter(), m.converged())
    ))?;
    if let (Some(n), Some((bic, aic))) = (m.n_train_samples(), m.training_information_criteria()) {
        print_result(&format!(
            "BIC {}, AIC {} (from the last lower bound and the {n} training samples; `emgpu score` gives them on any data)",
            num(bic),
            num(aic)
        ))?;
    }
    print_result("")?;
    let mut rows = vec![
        ["component".to_string(), "weight".to_string()]
            .into_iter()
            .chain(cols.iter().map(|c| format!("mean {c}")))
            .chain(cols.iter().map(|c| format!("var {c}")))
            .collect::<Vec<_>>(),
    ];
    for c in 0..k {
        rows.push(
            [c.to_string(), num(weights[c])]
                .into_iter()
                .chain(means[c].iter().map(|&v| num(v)))
                .chain(vars[c].iter().map(|&v| num(v)))
                .collect(),
        );
    }
    print_table(&rows)?;
    if cmd.full {
        let cov = m.params().covariances();
        let matrix = |offset: usize| -> Vec<Vec<String>> {
            std::iter::once(
                std::iter::once(String::new())
                    .chain(cols.iter().cloned())
                    .collect(),
            )
            .chain((0..d).map(|i| {
                std::iter::once(cols[i].clone())
                    .chain((0..d).map(|j| num(cov[offset + i * d + j])))
                    .collect()
            }))
            .collect()
        };
        match m.covariance_type() {
            CovarianceType::Full => {
                for c in 0..k {
                    print_result("")?;
                    print_result(&format!("covariance of component {c}:"))?;
                    print_table(&matrix(c * d * d))?;
                }
            }
            CovarianceType::Tied => {
                print_result("")?;
                print_result("covariance (shared by all components):")?;
                print_table(&matrix(0))?;
            }
            CovarianceType::Diag | CovarianceType::Spherical => {
                print_result("")?;
                print_result(&format!(
                    "({} covariances are diagonal: the variances above are the whole matrices)",
                    m.covariance_type()
                ))?;
            }
        }
    }
    Ok(())
}

/// An array as nested JSON arrays of its shape.
fn nested(a: &ndarray::ArrayD<f64>) -> Value {
    fn walk(v: &[f64], shape: &[usize]) -> Value {
        match shape {
            [] => json!(v[0]),
            [n, rest @ ..] => {
                let stride: usize = rest.iter().product();
                Value::Array(
                    (0..*n)
                        .map(|i| walk(&v[i * stride..(i + 1) * stride], rest))
                        .collect(),
                )
            }
        }
    }
    let flat: Vec<f64> = a.iter().copied().collect();
    walk(&flat, a.shape())
}

fn show_kmeans(
    cmd: &ShowCmd,
    m: &FittedKMeans,
    names: Option<Vec<String>>,
) -> Result<(), CliError> {
    let (k, d) = (m.n_clusters(), m.n_features());
    let centers: Vec<Vec<f64>> = m
        .cluster_centers()
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    if cmd.json {
        let doc = json!({
            "model": "kmeans",
            "n_clusters": k,
            "n_features": d,
            "cluster_centers": centers,
            "inertia": finite(m.inertia()),
            "n_iter": m.n_iter(),
            "converged": m.converged(),
            "feature_names": names,
        });
        return print_result(&doc.to_string());
    }
    let cols = column_names(&names, d);
    print_result(&format!("k-means (kmeans): {k} clusters, {d} features"))?;
    if let Some(names) = &names {
        print_result(&format!("features: {}", names.join(", ")))?;
    }
    print_result(&format!(
        "inertia {}, {}",
        num(m.inertia()),
        fit_line(m.n_iter(), m.converged())
    ))?;
    print_result("")?;
    let mut rows = vec![
        std::iter::once("cluster".to_string())
            .chain(cols.iter().map(|c| format!("center {c}")))
            .collect::<Vec<_>>(),
    ];
    for (c, center) in centers.iter().enumerate() {
        rows.push(
            std::iter::once(c.to_string())
                .chain(center.iter().map(|&v| num(v)))
                .collect(),
        );
    }
    print_table(&rows)
}
