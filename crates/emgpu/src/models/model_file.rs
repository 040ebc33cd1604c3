//! The model file: JSON with the header every emgpu model shares (`format`, `version`, `model`),
//! then the model's own fields, read and written through serde derives. Parameter arrays are
//! nested JSON arrays in scikit-learn's shapes (`Nested`); their shapes are checked on reading.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The `format` field of every emgpu model file.
pub const MODEL_FORMAT: &str = "emgpu-model";
/// The version of the model file schema this build writes (and the newest it reads).
pub const MODEL_VERSION: u64 = 1;

/// The header of every model file, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// The schema version, at most [`MODEL_VERSION`].
    pub version: u64,
    /// The model's kind: `gmm`, `kmeans`, ...
    pub model: String,
}

impl Header {
    /// The header of a model of `kind` written by this build.
    pub(crate) fn new(kind: &str) -> Self {
        Self {
            format: MODEL_FORMAT.into(),
            version: MODEL_VERSION,
            model: kind.into(),
        }
    }
}

/// The header as read, each field optional so that a wrong or missing one gets its own message.
#[derive(Deserialize)]
struct LooseHeader {
    format: Option<Value>,
    version: Option<Value>,
    model: Option<Value>,
}

/// A number or nested arrays of numbers: a parameter array in scikit-learn's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Nested {
    /// One number (a 0-d array).
    Number(f64),
    /// An array of arrays or numbers.
    List(Vec<Nested>),
}

impl Nested {
    /// `v` (row-major) as nested arrays of `shape`.
    pub(crate) fn from_flat(v: &[f64], shape: &[usize]) -> Self {
        match shape {
            [] => Nested::Number(v[0]),
            [n, rest @ ..] => {
                let stride: usize = rest.iter().product();
                Nested::List(
                    (0..*n)
                        .map(|i| Nested::from_flat(&v[i * stride..(i + 1) * stride], rest))
                        .collect(),
                )
            }
        }
    }

    /// The numbers, row-major, if the nesting is exactly `shape`; `name` names the field in the
    /// error.
    pub(crate) fn to_flat(&self, shape: &[usize], name: &str) -> Result<Vec<f64>> {
        fn walk(v: &Nested, shape: &[usize], out: &mut Vec<f64>) -> bool {
            match (v, shape) {
                (Nested::Number(x), []) => {
                    out.push(*x);
                    true
                }
                (Nested::List(items), [n, rest @ ..]) if items.len() == *n => {
                    items.iter().all(|item| walk(item, rest, out))
                }
                _ => false,
            }
        }
        let mut out = Vec::with_capacity(shape.iter().product());
        if walk(self, shape, &mut out) {
            Ok(out)
        } else {
            Err(Error::BadModel(format!(
                "\"{name}\" does not have the shape its covariance type and sizes require (expected shape {shape:?})"
            )))
        }
    }
}

/// `v` when finite, else `None` (written as `null`: JSON has no NaN or infinity).
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Feature names for a model of `d` features: one per feature, none repeated.
pub(crate) fn checked_names(names: Option<Vec<String>>, d: usize) -> Result<Option<Vec<String>>> {
    let Some(names) = names else { return Ok(None) };
    if names.len() != d {
        return Err(Error::BadModel(format!(
            "\"feature_names\" has {} names for {d} features",
            names.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::BadModel(format!(
            "\"feature_names\" names \"{dup}\" twice"
        )));
    }
    Ok(Some(names))
}

/// Parses a model file of kind `kind` (`what` names it in errors, e.g. "a Gaussian mixture"):
/// checks the header (`format` is emgpu's, `version` one this build reads, `model` is `kind`),
/// then deserializes the whole document as `T`.
pub(crate) fn read<T: DeserializeOwned>(text: &str, kind: &str, what: &str) -> Result<T> {
    read_with(text, kind, what, true)
}

/// [`read`], where `format` and `version` may be absent when `!strict` (a file written by hand
/// or by another tool with only `"model"`); present, they are checked as in [`read`].
pub(crate) fn read_with<T: DeserializeOwned>(
    text: &str,
    kind: &str,
    what: &str,
    strict: bool,
) -> Result<T> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| Error::BadModel(format!("not valid JSON: {e}")))?;
    if !doc.is_object() {
        return Err(Error::BadModel(
            "the top level must be a JSON object".into(),
        ));
    }
    let header: LooseHeader = serde_json::from_value(doc.clone()).map_err(bad_model)?;
    let missing = |key: &str| Error::BadModel(format!("missing field \"{key}\""));
    let format = match header.format {
        Some(f) => f,
        None if !strict => Value::from(MODEL_FORMAT),
        None => return Err(missing("format")),
    };
    if format.as_str() != Some(MODEL_FORMAT) {
        return Err(Error::BadModel(format!(
            "field \"format\" must be \"{MODEL_FORMAT}\""
        )));
    }
    let version = match header.version {
        Some(v) => v,
        None if !strict => Value::from(MODEL_VERSION),
        None => return Err(missing("version")),
    };
    if !version
        .as_u64()
        .is_some_and(|v| (1..=MODEL_VERSION).contains(&v))
    {
        return Err(Error::BadModel(format!(
            "field \"version\" must be an integer from 1 to {MODEL_VERSION} (this build of emgpu reads up to {MODEL_VERSION})"
        )));
    }
    match header.model.ok_or_else(|| missing("model"))?.as_str() {
        Some(m) if m == kind => {}
        Some(other) => {
            return Err(Error::BadModel(format!(
                "this is a \"{other}\" model, not {what} (\"{kind}\")"
            )));
        }
        None => return Err(Error::BadModel("field \"model\" must be a string".into())),
    }
    serde_json::from_value(doc).map_err(bad_model)
}

/// A serde error as an [`Error::BadModel`], field names in double quotes as in the other
/// messages ("missing field \"weights\"").
fn bad_model(e: serde_json::Error) -> Error {
    Error::BadModel(e.to_string().replace('`', "\""))
}

/// The model file text of `doc`: compact JSON on one line, ending with a newline. (Pretty-printed,
/// a K = 200, D = 200 full model was 405 MB, mostly indentation; any JSON reader, Python's
/// `json.load` included, reads the compact form.)
pub(crate) fn write<T: Serialize>(doc: &T) -> String {
    let mut text = serde_json::to_string(doc)
        .expect("model files are plain data (numbers, strings, arrays): serializing cannot fail");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_files_are_compact_json_on_one_line() {
        let doc = serde_json::json!({"format": "emgpu-model", "means": [[1.0, 2.5], [3.0, 4.0]]});
        let text = super::write(&doc);
        assert_eq!(
            text,
            "{\"format\":\"emgpu-model\",\"means\":[[1.0,2.5],[3.0,4.0]]}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }
}
