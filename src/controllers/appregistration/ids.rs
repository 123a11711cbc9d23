//! Stable keys: the application's `uniqueName` and the IDs of its app roles and scopes.
//!
//! Both are derived from the CR alone, so a crash after a create, or deleting and re-creating the CR,
//! finds the same application and keeps the same role and scope IDs (tokens and grants keep meaning).

use uuid::Uuid;

/// Default `uniqueName` prefix (`--unique-name-prefix`).
pub const DEFAULT_UNIQUE_NAME_PREFIX: &str = "entra-operator";

/// UUIDv5 namespace of every role and scope ID the operator derives. Never change it: every
/// derived ID in every tenant would change with it.
pub const ENTITLEMENT_ID_NAMESPACE: Uuid = uuid::uuid!("0b9e7f1c-4d2a-5e8b-9c31-7a6f2d8e4b10");

/// The application's `uniqueName`: `<prefix>.<namespace>.<name>`.
///
/// A namespace name is a DNS label (no dots), so the first dot after the prefix ends the namespace
/// and no two (namespace, name) pairs give the same string. (The form before, with dashes, mapped
/// namespace `c` / name `a-b` and namespace `c-a` / name `b` to one application; applications
/// created with it keep their name, recorded in status, because Graph cannot rename them.)
pub fn unique_name(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}.{namespace}.{name}")
}

/// The `uniqueName` of the form before 0.2 (`<prefix>-<namespace>-<name>`), still found on
/// applications created then.
pub fn legacy_unique_name(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}-{namespace}-{name}")
}

/// Whether `unique_name` has the form this operator gives applications it creates (either form):
/// such an application belongs to some resource and is never adopted.
pub fn is_operator_unique_name(prefix: &str, unique_name: &str) -> bool {
    unique_name
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
}

/// ID of the delegated permission (scope) `value` of the app `unique_name`.
pub fn scope_id(unique_name: &str, value: &str) -> String {
    derived_id(unique_name, "scope", value)
}

/// ID of the app role `value` of the app `unique_name`.
pub fn role_id(unique_name: &str, value: &str) -> String {
    derived_id(unique_name, "role", value)
}

fn derived_id(unique_name: &str, kind: &str, value: &str) -> String {
    let name = format!("{unique_name}/{kind}/{value}");
    Uuid::new_v5(&ENTITLEMENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_name_joins_prefix_namespace_and_name() {
        assert_eq!(
            unique_name(DEFAULT_UNIQUE_NAME_PREFIX, "bookme", "mgmt-api"),
            "entra-operator.bookme.mgmt-api"
        );
    }

    #[test]
    fn unique_names_of_different_pairs_never_collide() {
        // The pair the dashed form confused.
        assert_ne!(unique_name("p", "c", "a-b"), unique_name("p", "c-a", "b"));
        assert_eq!(
            legacy_unique_name("p", "c", "a-b"),
            legacy_unique_name("p", "c-a", "b")
        );
        // Names may hold dots, namespaces may not: the namespace ends at the first dot.
        let pairs = [
            ("c", "a.b"),
            ("c", "a-b"),
            ("c-a", "b"),
            ("a", "b.c"),
            ("ab", "c"),
        ];
        let names: std::collections::BTreeSet<String> = pairs
            .iter()
            .map(|(ns, n)| unique_name("p", ns, n))
            .collect();
        assert_eq!(names.len(), pairs.len());
        assert!(is_operator_unique_name("p", "p.c.a"));
        assert!(is_operator_unique_name("p", "p-c-a"));
        assert!(!is_operator_unique_name("p", "pc-a"));
        assert!(!is_operator_unique_name("p", "legacy"));
    }

    #[test]
    fn derived_ids_are_fixed_uuid_v5_values() {
        // Expected values computed independently (Python's uuid.uuid5 with the same namespace).
        let cases = [
            (
                scope_id("entra-operator-bookme-mgmt-api", "Access"),
                "89da3642-7503-5e14-b26b-6496a1544b0c",
            ),
            (
                role_id("entra-operator-bookme-mgmt-api", "System"),
                "51a940b5-b246-56fd-be63-511a59121ff3",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let u = "entra-operator-ns-app";
        assert_eq!(scope_id(u, "Access"), scope_id(u, "Access"));
        assert_ne!(scope_id(u, "Access"), role_id(u, "Access"));
        assert_ne!(
            scope_id(u, "Access"),
            scope_id("entra-operator-ns-other", "Access")
        );
    }
}
