//! `tenantRelationships/findTenantInformationBy…`.

use super::*;

pub(super) fn tenant_info(
    st: &State,
    req: &Req,
    id: Option<&str>,
    domain: Option<&str>,
) -> GResult {
    let t = match (id, domain) {
        (Some(id), _) => st.tenants.get(&id.to_ascii_lowercase()),
        (_, Some(d)) => st.resolve_tenant(d),
        _ => None,
    };
    match t {
        Some(t) => {
            let mut v = t.info();
            v["@odata.context"] =
                json!(format!("{GRAPH_CONTEXT}microsoft.graph.tenantInformation"));
            Ok(Resp::json(200, &select(v, req)))
        }
        None => Err(GErr::new(
            404,
            "Request_ResourceNotFound",
            format!(
                "Tenant information for '{}' was not found.",
                id.or(domain).unwrap_or("")
            ),
        )),
    }
}
