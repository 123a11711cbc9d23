//! One field's validation failure as kube-apiserver reports it (a `Status` cause), and the 422
//! message that lists them. Shared by schema validation (`validation`) and the CEL cost checks at
//! CRD creation (`cel_cost`).

use serde_json::Value;

/// One validation failure: the field path (e.g. `spec.secret.lifetime`) and the message that
/// kube-apiserver puts in the `Status` cause (without the field prefix), e.g.
/// `Invalid value: "x y": spec.bankId in body should match '^[a-z]+$'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// The Status cause reason: `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`,
    /// `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueForbidden`, `FieldValueDuplicate`,
    /// `FieldValueTypeInvalid`.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, reason: &str, message: String) -> Self {
        FieldError {
            field: field.to_string(),
            message,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid(field: &str, value: &Value, detail: impl AsRef<str>) -> Self {
        Self::new(
            field,
            "FieldValueInvalid",
            format!("Invalid value: {}: {}", go_value(value), detail.as_ref()),
        )
    }

    pub(crate) fn required(field: &str) -> Self {
        Self::new(field, "FieldValueRequired", "Required value".to_string())
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Renders errors the way kube-apiserver's 422 `Status.message` does:
/// `BankClient.entra.bookme.io "b" is invalid: spec.bankId: Invalid value: ...` (several errors are
/// listed in brackets, comma separated).
pub fn render_message(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let parts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let body = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    format!("{qualified} \"{name}\" is invalid: {body}")
}

/// Go's `%v`/`%q` rendering of a value inside `Invalid value: ...`.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}
