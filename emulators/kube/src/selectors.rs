//! Label and field selectors.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once(" notin ") {
                reqs.push(Req::NotIn(
                    k.trim().into(),
                    set_values(v).ok_or_else(|| format!("unable to parse requirement: {p}"))?,
                ));
            } else if let Some((k, v)) = p.split_once(" in ") {
                reqs.push(Req::In(
                    k.trim().into(),
                    set_values(v).ok_or_else(|| format!("unable to parse requirement: {p}"))?,
                ));
            } else if p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                reqs.push(Req::Exists(p.to_string()));
            } else {
                return Err(format!("unable to parse requirement: {p}"));
            }
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::NotEq(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    /// Matches an object's labels.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels[k].as_str().map(String::from))
    }

    /// Matches a field selector (keys are dotted paths into the object).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|k| {
            let mut cur = obj;
            for part in k.split('.') {
                cur = cur.get(part)?;
            }
            match cur {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
    }
}

/// A field selector: same syntax subset (`=`, `==`, `!=`), keys are object paths. Missing
/// `metadata.namespace` matches as the empty string, as for cluster-scoped objects.
pub fn parse_field_selector(s: &str) -> Result<LabelSelector, String> {
    let sel = LabelSelector::parse(s)?;
    for r in &sel.0 {
        if !matches!(r, Req::Eq(..) | Req::NotEq(..)) {
            return Err(format!("invalid field selector: {s}"));
        }
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "x", "tier": "web"}}});
        for (sel, want) in [
            ("app=x", true),
            ("app==x,tier=web", true),
            ("app!=x", false),
            ("app in (x, y)", true),
            ("tier notin (web)", false),
            ("app", true),
            ("!app", false),
            ("missing", false),
            ("!missing", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn field_selectors() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "involvedObject": {"name": "b"}});
        assert!(
            parse_field_selector("metadata.name=a,metadata.namespace=ns")
                .unwrap()
                .matches_fields(&o)
        );
        assert!(
            !parse_field_selector("metadata.name!=a")
                .unwrap()
                .matches_fields(&o)
        );
        assert!(
            parse_field_selector("involvedObject.name=b")
                .unwrap()
                .matches_fields(&o)
        );
        assert!(parse_field_selector("a in (b)").is_err());
    }
}
