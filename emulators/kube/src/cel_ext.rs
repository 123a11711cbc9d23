//! CEL for `x-kubernetes-validations`: the `cel` crate's standard library plus the Kubernetes
//! extension libraries CRD rules commonly use (strings: `lowerAscii`, `split`, `join`, `indexOf`,
//! `replace`, `trim`, ...; lists; math; `isURL`), with schema-aware conversion of JSON values
//! (`format: duration` / `date-time` strings become CEL durations / timestamps, as in Kubernetes).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as Cel};
use parking_lot::Mutex;
use serde_json::Value;

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        Arc::new(env)
    })
    .clone()
}

/// Compiles (and caches) a CEL program.
pub fn compile(src: &str) -> Result<Arc<Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().get(src) {
        return Ok(p.clone());
    }
    let program = env().compile(src).map_err(|e| e.to_string())?;
    let program = Arc::new(program);
    cache.lock().insert(src.to_string(), program.clone());
    Ok(program)
}

/// Whether a rule mentions `oldSelf` (a transition rule).
pub fn references_old_self(src: &str) -> bool {
    let bytes = src.as_bytes();
    let mut start = 0;
    while let Some(i) = src[start..].find("oldSelf") {
        let at = start + i;
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let end = at + "oldSelf".len();
        let after_ok =
            end >= bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
        if before_ok && after_ok {
            return true;
        }
        start = end;
    }
    false
}

fn is_url(s: Arc<String>) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && !rest.is_empty()
        && !rest.contains(char::is_whitespace)
}

fn execute(src: &str, self_val: &Cel, old: Option<&Cel>) -> Result<Cel, String> {
    let program = compile(src)?;
    let mut ctx = Context::with_env(env());
    ctx.add_variable_from_value("self", self_val.clone());
    if let Some(o) = old {
        ctx.add_variable_from_value("oldSelf", o.clone());
    }
    let _ = ctx.add_function("isURL", is_url);
    program.execute(&ctx).map_err(|e| e.to_string())
}

/// Evaluates a rule that must produce a bool.
pub fn eval_bool(src: &str, self_val: &Cel, old: Option<&Cel>) -> Result<bool, String> {
    match execute(src, self_val, old)? {
        Cel::Bool(b) => Ok(b),
        other => Err(format!("rule did not evaluate to a bool: {other:?}")),
    }
}

/// Evaluates a `messageExpression` that must produce a string.
pub fn eval_string(src: &str, self_val: &Cel, old: Option<&Cel>) -> Result<String, String> {
    match execute(src, self_val, old)? {
        Cel::String(s) => Ok(s.to_string()),
        other => Err(format!(
            "messageExpression did not evaluate to a string: {other:?}"
        )),
    }
}

/// Go's `time.ParseDuration` (units ns, us, µs, ms, s, m, h; fractions; sign).
pub fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * nanos;
    }
    let d = chrono::Duration::nanoseconds(total as i64);
    Some(if neg { -d } else { d })
}

/// JSON → CEL, guided by the schema (durations, timestamps, int-or-string).
pub fn json_to_cel(v: &Value, schema: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                let f = n.as_f64().unwrap_or_default();
                if schema["type"] == "integer" && f.fract() == 0.0 {
                    Cel::Int(f as i64)
                } else {
                    Cel::Float(f)
                }
            }
        }
        Value::String(s) => match schema["format"].as_str() {
            Some("duration") => match parse_go_duration(s) {
                Some(d) => Cel::Duration(d),
                None => Cel::String(Arc::new(s.clone())),
            },
            Some("date-time") => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => Cel::Timestamp(t),
                Err(_) => Cel::String(Arc::new(s.clone())),
            },
            _ => Cel::String(Arc::new(s.clone())),
        },
        Value::Array(items) => {
            let item_schema = &schema["items"];
            Cel::List(Arc::new(
                items.iter().map(|i| json_to_cel(i, item_schema)).collect(),
            ))
        }
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let mut out: HashMap<Key, Cel> = HashMap::with_capacity(map.len());
            for (k, child) in map {
                let cs = props
                    .and_then(|p| p.get(k))
                    .unwrap_or(if additional.is_object() {
                        additional
                    } else {
                        &Value::Null
                    });
                out.insert(Key::String(Arc::new(k.clone())), json_to_cel(child, cs));
            }
            Cel::Map(CelMap::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(rule: &str, v: Value) -> Result<bool, String> {
        eval_bool(rule, &json_to_cel(&v, &Value::Null), None)
    }

    #[test]
    fn standard_and_kubernetes_functions() {
        let v = json!({"a": "Hello", "l": [1, 2, 3], "s": "x,y,z", "u": "https://x.io/p"});
        for rule in [
            "size(self.l) == 3",
            "self.a.startsWith('He') && self.a.endsWith('lo') && self.a.contains('ell')",
            "self.a.matches('^H[a-z]+$')",
            "self.l.all(x, x > 0) && self.l.exists(x, x == 2) && self.l.exists_one(x, x == 3)",
            "self.l.map(x, x * 2) == [2, 4, 6] && self.l.filter(x, x > 1).size() == 2",
            "has(self.a) && !has(self.b)",
            "self.a.lowerAscii() == 'hello' && self.a.upperAscii() == 'HELLO'",
            "self.s.split(',') == ['x', 'y', 'z'] && ['a', 'b'].join('-') == 'a-b'",
            "self.s.indexOf('y') == 2",
            "isURL(self.u) && !isURL('not a url')",
            "duration('48h') > duration('1h30m') && int('7') * 24 == 168",
            "duration(string(int('730') * 24) + 'h' + '0s') <= duration('17520h')",
        ] {
            assert_eq!(eval(rule, v.clone()), Ok(true), "{rule}");
        }
        assert_eq!(eval("self.l.all(x, x > 1)", v.clone()), Ok(false));
        assert!(eval("self.missing == 1", v).is_err());
    }

    #[test]
    fn old_self_is_detected_as_a_word() {
        assert!(references_old_self("self == oldSelf"));
        assert!(references_old_self("oldSelf.x == self.x"));
        assert!(!references_old_self("self.oldSelfish == 1"));
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(
            parse_go_duration("1h30m"),
            Some(chrono::Duration::minutes(90))
        );
        assert_eq!(
            parse_go_duration("1.5s"),
            Some(chrono::Duration::milliseconds(1500))
        );
        assert_eq!(parse_go_duration("10d"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
