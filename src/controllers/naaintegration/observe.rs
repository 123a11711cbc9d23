//! The NaaIntegration controller's observe stage. It reads nothing on its own: the answer to the
//! server-side apply of each child carries the child's status, and this is what is read from it.

use crate::api::AppRegistration;

/// The two children as the API server returned them after the apply, status included.
pub struct Children {
    pub web_api: AppRegistration,
    pub app: AppRegistration,
}

impl Children {
    /// The web API's and the add-in app's appIds, once each child reports one.
    pub fn app_ids(&self) -> (Option<String>, Option<String>) {
        let id = |a: &AppRegistration| {
            a.status
                .as_ref()
                .and_then(|s| s.app_id.as_deref().map(str::to_string))
        };
        (id(&self.web_api), id(&self.app))
    }
}
