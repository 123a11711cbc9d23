//! Names the operator stamps on what it writes to Kubernetes: the managed-by label and the field
//! manager of every server-side apply. Below the controllers and the credentials, so both take them
//! from here.

/// Standard label naming the tool that manages an object (Secrets, ConfigMaps, child resources).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on objects this operator writes.
pub const MANAGED_BY: &str = "entra-operator";
/// The field manager the operator uses for everything it applies.
pub const FIELD_MANAGER: &str = "entra-operator";

/// Annotation on a Secret the operator stopped managing when its resource was deleted with
/// `deletionPolicy: Orphan`: the resource it came from (`AppRegistration/<name>`).
pub const ORPHANED_FROM_ANNOTATION: &str = "entra.bookme.io/orphaned-from";

/// Label selector of the objects the operator owns (only these Secrets are cached).
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_names_the_managed_by_label() {
        assert_eq!(
            managed_selector(),
            "app.kubernetes.io/managed-by=entra-operator"
        );
    }
}
