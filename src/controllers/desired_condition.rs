//! One condition as a controller wants it, before timestamps: what `plan` and `report` produce and
//! `conditions` merges into a status. Below both `conditions` and `kstatus`, which use it.

/// One condition as a controller wants it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    /// CamelCase reason a human can act on, e.g. `WaitingForReference`.
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DesiredCondition {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(type_, true, reason, message)
    }

    pub fn failed(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, false, reason, message)
    }
}
