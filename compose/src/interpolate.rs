//! Variable interpolation as the Compose specification defines it.
//!
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?error}` / `${VAR?error}` (required), `${VAR:+alt}` / `${VAR+alt}`
//! (replacement when set), and `$$` for a literal `$`. Defaults and alternatives are
//! themselves interpolated, so `${A:-${B}}` works. A `$` that starts none of these
//! (`$5`, a trailing `$`) is kept literally: CasaOS descriptions contain prices.

use std::collections::BTreeMap;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error("required variable {name} is missing: {message}")]
    Required { name: String, message: String },
    #[error("unterminated ${{...}} in '{0}'")]
    Unterminated(String),
    #[error("invalid variable name in '${{{0}}}'")]
    BadName(String),
}

/// Variables visible to interpolation.
pub type Vars = BTreeMap<String, String>;

/// Maximum nesting of `${...}` inside defaults; deeper input is refused.
const MAX_DEPTH: usize = 16;

pub fn interpolate(input: &str, vars: &Vars) -> Result<String, InterpolationError> {
    expand(input, vars, 0)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn expand(input: &str, vars: &Vars, depth: usize) -> Result<String, InterpolationError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    if depth > MAX_DEPTH {
        return Err(InterpolationError::Unterminated(shorten(input)));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let close =
                    matching_brace(&after[1..]).ok_or_else(|| InterpolationError::Unterminated(shorten(input)))?;
                let body = &after[1..1 + close];
                out.push_str(&braced(body, vars, depth)?);
                rest = &after[1 + close + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = after.find(|c: char| !is_name_char(c)).unwrap_or(after.len());
                out.push_str(vars.get(&after[..end]).map(String::as_str).unwrap_or(""));
                rest = &after[end..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, counting nested `${ }` pairs.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(body: &str, vars: &Vars, depth: usize) -> Result<String, InterpolationError> {
    let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(InterpolationError::BadName(shorten(body)));
    }
    let value = vars.get(name);
    let op = &body[name_end..];
    let arg = |skip: usize| expand(&op[skip..], vars, depth + 1);
    let set_non_empty = value.is_some_and(|v| !v.is_empty());
    Ok(match op {
        "" => value.cloned().unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_non_empty {
                value.cloned().unwrap_or_default()
            } else {
                arg(2)?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v.clone(),
            None => arg(1)?,
        },
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let skip = if op.starts_with(":?") { 2 } else { 1 };
            let present = if skip == 2 { set_non_empty } else { value.is_some() };
            if !present {
                let message = arg(skip)?;
                let message = if message.is_empty() {
                    "not set".to_owned()
                } else {
                    message
                };
                return Err(InterpolationError::Required {
                    name: name.to_owned(),
                    message,
                });
            }
            value.cloned().unwrap_or_default()
        }
        _ if op.starts_with(":+") => {
            if set_non_empty {
                arg(2)?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if value.is_some() {
                arg(1)?
            } else {
                String::new()
            }
        }
        _ => return Err(InterpolationError::BadName(shorten(body))),
    })
}

fn shorten(s: &str) -> String {
    cubeos_contract::validate::truncate(s, 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [
            ("SET", "value"),
            ("EMPTY", ""),
            ("AppID", "navidrome"),
            ("PORT", "8080"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn i(s: &str) -> String {
        interpolate(s, &vars()).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(i("/DATA/AppData/$AppID/data"), "/DATA/AppData/navidrome/data");
        assert_eq!(i("${PORT}:80"), "8080:80");
        assert_eq!(i("$UNSET-x"), "-x");
        assert_eq!(i("no vars"), "no vars");
    }

    #[test]
    fn defaults_distinguish_unset_from_empty() {
        assert_eq!(i("${UNSET:-d}"), "d");
        assert_eq!(i("${EMPTY:-d}"), "d");
        assert_eq!(i("${SET:-d}"), "value");
        assert_eq!(i("${UNSET-d}"), "d");
        assert_eq!(i("${EMPTY-d}"), "");
        assert_eq!(i("${UNSET:-${PORT}}"), "8080");
        assert_eq!(i("${UNSET:-a:b-c}"), "a:b-c");
    }

    #[test]
    fn alternatives() {
        assert_eq!(i("${SET:+alt}"), "alt");
        assert_eq!(i("${EMPTY:+alt}"), "");
        assert_eq!(i("${EMPTY+alt}"), "alt");
        assert_eq!(i("${UNSET+alt}"), "");
    }

    #[test]
    fn required_variables_name_themselves() {
        assert_eq!(i("${SET:?must}"), "value");
        assert_eq!(i("${EMPTY?must}"), "");
        let e = interpolate("${EMPTY:?set a password}", &vars()).unwrap_err();
        assert_eq!(
            e,
            InterpolationError::Required {
                name: "EMPTY".into(),
                message: "set a password".into()
            }
        );
        assert!(e.to_string().contains("EMPTY"));
        let e = interpolate("${DB_PASS?}", &vars()).unwrap_err();
        assert!(matches!(e, InterpolationError::Required { ref name, .. } if name == "DB_PASS"));
    }

    #[test]
    fn escapes_and_literals() {
        assert_eq!(i("$$HOME"), "$HOME");
        assert_eq!(i("cost $5"), "cost $5");
        assert_eq!(i("trailing $"), "trailing $");
        assert_eq!(i("a$$$SET"), "a$value");
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            interpolate("${SET", &vars()),
            Err(InterpolationError::Unterminated(_))
        ));
        assert!(matches!(
            interpolate("${}", &vars()),
            Err(InterpolationError::BadName(_))
        ));
        assert!(matches!(
            interpolate("${1X}", &vars()),
            Err(InterpolationError::BadName(_))
        ));
        assert!(matches!(
            interpolate("${SET!x}", &vars()),
            Err(InterpolationError::BadName(_))
        ));
        let deep = format!("{}x{}", "${U:-".repeat(100), "}".repeat(100));
        assert!(interpolate(&deep, &vars()).is_err());
    }
}
