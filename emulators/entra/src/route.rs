//! Turns a request path into its template (ids replaced by `{id}`, OData keys by `{prop}`) plus the
//! parameters, so handlers can match on templates and the request log can count per template.

const GRAPH_LITERALS: &[&str] = &[
    "applications",
    "servicePrincipals",
    "addPassword",
    "removePassword",
    "addKey",
    "removeKey",
    "federatedIdentityCredentials",
    "owners",
    "$ref",
    "appRoleAssignedTo",
    "appRoleAssignments",
    "oauth2PermissionGrants",
    "directory",
    "deletedItems",
    "restore",
    "directoryObjects",
    "tenantRelationships",
    "delta",
    "$batch",
    "$count",
    "microsoft.graph.application",
    "microsoft.graph.servicePrincipal",
    "organization",
    "users",
];

const IDENTITY_LITERALS: &[&str] = &[
    "oauth2",
    "v2.0",
    "token",
    "authorize",
    ".well-known",
    "openid-configuration",
    "discovery",
    "keys",
    "adminconsent",
    "instance",
];

pub(crate) struct Route {
    pub(crate) template: String,
    /// Values of `{…}` placeholders, in order.
    pub(crate) params: Vec<String>,
}

pub(crate) fn route(path: &str) -> Route {
    let mut params = Vec::new();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out = String::new();
    if segs.first() == Some(&"v1.0") {
        out.push_str("/v1.0");
        for seg in &segs[1..] {
            out.push('/');
            let seg = crate::util::percent_decode(seg);
            // A function may be called as `delta`, `delta()` or `microsoft.graph.delta()`, an
            // action as `addPassword` or `microsoft.graph.addPassword`.
            let bare = seg.strip_suffix("()").unwrap_or(&seg);
            let literal = [bare, bare.strip_prefix("microsoft.graph.").unwrap_or(bare)]
                .into_iter()
                .find(|s| GRAPH_LITERALS.contains(s));
            if let Some(literal) = literal {
                out.push_str(literal);
            } else if let Some(open) = bare.find('(')
                && bare.ends_with(')')
            {
                let name = &bare[..open];
                let inner = &bare[open + 1..bare.len() - 1];
                match inner.split_once('=') {
                    Some((prop, value)) => {
                        let value = value.trim().trim_matches('\'').replace("''", "'");
                        out.push_str(&format!("{name}({prop}='{{{prop}}}')"));
                        params.push(value);
                    }
                    None => {
                        // `applications('id')` is the same as `applications/id`.
                        out.push_str(&format!("{name}/{{id}}"));
                        params.push(inner.trim_matches('\'').to_string());
                    }
                }
            } else {
                out.push_str("{id}");
                params.push(bare.to_string());
            }
        }
    } else if segs.first() == Some(&"_emulator") {
        out = path.to_string();
    } else {
        for (i, seg) in segs.iter().enumerate() {
            out.push('/');
            if i == 0 {
                out.push_str("{tenant}");
                params.push(crate::util::percent_decode(seg));
            } else if IDENTITY_LITERALS.contains(seg) {
                out.push_str(seg);
            } else {
                out.push_str("{id}");
                params.push(seg.to_string());
            }
        }
    }
    Route {
        template: out,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn templates() {
        let r = route("/v1.0/applications(uniqueName='app-a')");
        assert_eq!(r.template, "/v1.0/applications(uniqueName='{uniqueName}')");
        assert_eq!(r.params, vec!["app-a"]);
        let r = route("/v1.0/applications/abc/addPassword");
        assert_eq!(r.template, "/v1.0/applications/{id}/addPassword");
        let r = route("/v1.0/applications/abc/microsoft.graph.addPassword");
        assert_eq!(r.template, "/v1.0/applications/{id}/addPassword");
        let r = route("/v1.0/applications/abc/federatedIdentityCredentials(name='x')");
        assert_eq!(
            r.template,
            "/v1.0/applications/{id}/federatedIdentityCredentials(name='{name}')"
        );
        assert_eq!(r.params, vec!["abc", "x"]);
        let r = route("/v1.0/directory/deletedItems/microsoft.graph.application");
        assert_eq!(
            r.template,
            "/v1.0/directory/deletedItems/microsoft.graph.application"
        );
        let r = route("/t1/oauth2/v2.0/token");
        assert_eq!(r.template, "/{tenant}/oauth2/v2.0/token");
        assert_eq!(r.params, vec!["t1"]);
        let r = route("/v1.0/applications(appId='a%27b')");
        assert_eq!(r.params, vec!["a'b"]);
        let r = route("/v1.0/users/alice%40contoso.com");
        assert_eq!(r.template, "/v1.0/users/{id}");
        assert_eq!(r.params, vec!["alice@contoso.com"]);
        let r = route("/v1.0/applications/delta()");
        assert_eq!(r.template, "/v1.0/applications/delta");
        for p in [
            "/v1.0/servicePrincipals/delta",
            "/v1.0/servicePrincipals/delta()",
            "/v1.0/servicePrincipals/microsoft.graph.delta()",
            "/v1.0/servicePrincipals/microsoft.graph.delta",
        ] {
            let r = route(p);
            assert_eq!(r.template, "/v1.0/servicePrincipals/delta", "{p}");
            assert!(r.params.is_empty(), "{p}");
        }
    }
}
