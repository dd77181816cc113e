//! Reading a compose file: size limit, YAML with merge keys (`<<:`), then a JSON
//! tree (non-string keys become strings) with every string interpolated.

use serde_json::{Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::ComposeError;
use super::interpolate::{Vars, interpolate};

/// Largest compose file accepted. The CasaOS store's biggest is under 20 KiB.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Parses `text` into an interpolated JSON tree.
pub fn load(text: &str, vars: &Vars) -> Result<Value, ComposeError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ComposeError::TooLarge {
            bytes: text.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    // serde_yaml_ng bounds recursion depth and alias expansion ("billion laughs").
    let mut yaml: Yaml = serde_yaml_ng::from_str(text).map_err(|e| ComposeError::Yaml(e.to_string()))?;
    yaml.apply_merge()
        .map_err(|e| ComposeError::Yaml(format!("merge key: {e}")))?;
    let json = to_json(yaml, vars, "")?;
    if !json.is_object() {
        return Err(ComposeError::Invalid {
            path: String::new(),
            reason: "a compose file is a mapping".into(),
        });
    }
    Ok(json)
}

fn to_json(yaml: Yaml, vars: &Vars, path: &str) -> Result<Value, ComposeError> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Yaml::String(s) => Value::String(interpolate(&s, vars).map_err(|e| ComposeError::Interpolation {
            path: path.to_owned(),
            source: e,
        })?),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(v, vars, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => {
                        return Err(ComposeError::Invalid {
                            path: path.to_owned(),
                            reason: format!("unsupported mapping key {other:?}"),
                        });
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let value = to_json(v, vars, &child)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => to_json(tagged.value, vars, path)?,
    })
}
