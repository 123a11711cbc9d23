//! What every handler shares: the emulator's state, its signing key and address, and fault picking.

use parking_lot::Mutex;
use serde_json::Value;

use crate::config::FaultKind;
use crate::crypto::SigningKey;
use crate::model::State;

/// The emulator's state and fixed facts, shared by every connection.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) key: SigningKey,
    /// `https://127.0.0.1:PORT`
    pub(crate) base: String,
    pub(crate) info: Value,
}

impl Shared {
    /// Picks the fault to inject for this request, if any, consuming one of its `times`.
    pub(crate) fn pick_fault(&self, method: &str, template: &str) -> Option<FaultKind> {
        let mut st = self.state.lock();
        for rule in st.switches.faults.iter_mut() {
            if rule
                .method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if rule.path_template.as_deref().is_some_and(|t| t != template) {
                continue;
            }
            if rule.times == Some(0) {
                continue;
            }
            if rule.rate < 1.0 && crate::util::random_unit() >= rule.rate {
                continue;
            }
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            return Some(rule.kind.clone());
        }
        None
    }
}
