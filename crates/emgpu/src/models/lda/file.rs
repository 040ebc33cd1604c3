//! The LDA model file: `"model": "lda"`, `n_components` K, `n_features` V, `doc_topic_prior`,
//! `topic_word_prior`, `components` `[K][V]` (scikit-learn's `components_`, λ), and how the fit
//! went (`n_iter`, `bound_trace`: the approximate bound of the training documents under the λ of
//! each iteration's E-step; `backend`, `device`). Unknown keys are ignored; `format` and
//! `version` may be left out of a file written by hand.

use serde::{Deserialize, Serialize};

use super::FittedLda;
use crate::error::{Error, Result};
use crate::models::model_file::{self, MODEL_FORMAT, MODEL_VERSION, Nested};

#[derive(Debug, Serialize, Deserialize)]
struct LdaFile {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    model: String,
    n_components: usize,
    n_features: usize,
    doc_topic_prior: f64,
    topic_word_prior: f64,
    components: Nested,
    #[serde(default)]
    n_iter: usize,
    #[serde(default)]
    bound_trace: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
}

pub(super) fn write(m: &FittedLda) -> String {
    let (k, v) = (m.n_components(), m.n_features());
    model_file::write(&LdaFile {
        format: Some(MODEL_FORMAT.into()),
        version: Some(MODEL_VERSION),
        model: "lda".into(),
        n_components: k,
        n_features: v,
        doc_topic_prior: m.model.doc_topic_prior,
        topic_word_prior: m.model.topic_word_prior,
        components: Nested::from_flat(&m.components, &[k, v]),
        n_iter: m.n_iter,
        bound_trace: m
            .bound_trace
            .iter()
            .copied()
            .filter(|b| b.is_finite())
            .collect(),
        backend: m.report.as_ref().map(|r| r.backend.to_string()),
        device: m.report.as_ref().map(|r| r.device.clone()),
    })
}

pub(super) fn read(text: &str) -> Result<FittedLda> {
    let f: LdaFile = model_file::read_with(text, "lda", "an LDA model", false)?;
    let (k, v) = (f.n_components, f.n_features);
    if k == 0 || v == 0 {
        return Err(Error::BadModel(format!(
            "an LDA model needs at least one topic and one term (got n_components {k}, n_features {v})"
        )));
    }
    let shape_err = |_| {
        Error::BadModel(format!(
            "\"components\" must be [{k}][{v}] (n_components rows of n_features numbers)"
        ))
    };
    let components = f
        .components
        .to_flat(&[k, v], "components")
        .map_err(shape_err)?;
    let mut m = FittedLda::from_components(k, v, f.doc_topic_prior, f.topic_word_prior, components)
        .map_err(|e| match e {
            Error::InvalidParameter(m) => Error::BadModel(m),
            other => other,
        })?;
    m.n_iter = f.n_iter;
    m.bound_trace = f.bound_trace;
    Ok(m)
}
