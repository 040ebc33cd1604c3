//! The header every emgpu model file shares: `format`, `version`, `model`.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The `format` field of every emgpu model file.
pub const MODEL_FORMAT: &str = "emgpu-model";
/// The version of the model file schema this build writes (and the newest it reads).
pub const MODEL_VERSION: u64 = 1;

/// Parses a model file and checks its header: `format` is emgpu's, `version` one this build
/// reads, `model` is `kind` (`what` names it in the error, e.g. "a Gaussian mixture").
/// Returns the top-level object.
pub(crate) fn parse(text: &str, kind: &str, what: &str) -> Result<Map<String, Value>> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| Error::BadModel(format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = doc else {
        return Err(Error::BadModel(
            "the top level must be a JSON object".into(),
        ));
    };
    if field(&obj, "format")?.as_str() != Some(MODEL_FORMAT) {
        return Err(Error::BadModel(format!(
            "field \"format\" must be \"{MODEL_FORMAT}\""
        )));
    }
    match field(&obj, "version")?.as_u64() {
        Some(v) if (1..=MODEL_VERSION).contains(&v) => {}
        _ => {
            return Err(Error::BadModel(format!(
                "field \"version\" must be an integer from 1 to {MODEL_VERSION} (this build of emgpu reads up to {MODEL_VERSION})"
            )));
        }
    }
    match field(&obj, "model")?.as_str() {
        Some(m) if m == kind => Ok(obj),
        Some(other) => Err(Error::BadModel(format!(
            "this is a \"{other}\" model, not {what} (\"{kind}\")"
        ))),
        None => Err(Error::BadModel("field \"model\" must be a string".into())),
    }
}

/// The field `key` of a model file, or an error naming it.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a Value> {
    obj.get(key)
        .ok_or_else(|| Error::BadModel(format!("missing field \"{key}\"")))
}
