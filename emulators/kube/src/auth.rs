//! Who sends a request and what they may do: the admin token, ServiceAccount tokens issued by
//! TokenRequest, the anonymous user, and RBAC over the Roles, ClusterRoles and bindings in the
//! store (the policy itself is in `rbac`).

use hyper::header;
use serde_json::{Value, json};

use crate::api_error::{ApiError, ApiResult};
use crate::request::ReqInfo;
use crate::resources::res_key;
use crate::state::{State, now};

impl State {
    /// Who sends a request: the admin token (or, with no token configured and RBAC off, anyone)
    /// is the admin; a ServiceAccount token whose account still exists is that account; no
    /// credentials with RBAC on is the anonymous user; anything else is not authenticated.
    pub fn authenticate(&self, headers: &hyper::HeaderMap) -> Option<crate::rbac::UserInfo> {
        use crate::rbac::UserInfo;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let rbac = self.rbac.load(std::sync::atomic::Ordering::Relaxed);
        match bearer {
            Some(t) if self.token.as_deref() == Some(t) => Some(UserInfo::admin()),
            Some(t) => {
                let (ns, name, uid) = self.sa_tokens.lock().get(t).cloned()?;
                let sa = self
                    .store
                    .get(&res_key("", "serviceaccounts"), &ns, &name)?;
                (sa["metadata"]["uid"] == uid.as_str())
                    .then(|| UserInfo::service_account(&ns, &name))
            }
            None if self.token.is_some() && !rbac => None,
            None if rbac => Some(UserInfo::anonymous()),
            None => Some(UserInfo::admin()),
        }
    }

    /// RBAC over the Roles, ClusterRoles and bindings in the store.
    pub fn authorize(&self, user: &crate::rbac::UserInfo, a: &crate::rbac::Attributes) -> bool {
        if user.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        let all = |plural: &str| {
            self.store
                .list(&res_key("rbac.authorization.k8s.io", plural), None)
                .0
        };
        let (cr, crb, r, rb) = (
            all("clusterroles"),
            all("clusterrolebindings"),
            all("roles"),
            all("rolebindings"),
        );
        crate::rbac::Policy {
            cluster_roles: &cr,
            cluster_role_bindings: &crb,
            roles: &r,
            role_bindings: &rb,
        }
        .allows(user, a)
    }

    /// `POST serviceaccounts/<name>/token` (TokenRequest, what `kubectl create token` sends): a
    /// bearer token for the ServiceAccount, valid while the account exists.
    pub fn issue_token(&self, ri: &ReqInfo) -> ApiResult<Value> {
        self.token_request(ri, json!({}))
    }

    pub(crate) fn token_request(&self, ri: &ReqInfo, body: Value) -> ApiResult<Value> {
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.clone().unwrap_or_default();
        let Some(sa) = self.store.get(&ri.rt.key(), &ns, &name) else {
            return Err(ApiError::not_found(&ri.rt, &name));
        };
        let uid = sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let token = format!(
            "kube-emulator.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.sa_tokens
            .lock()
            .insert(token.clone(), (ns.clone(), name.clone(), uid));
        let seconds = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        let expires = (chrono::Utc::now() + chrono::Duration::seconds(seconds))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut spec = body["spec"].clone();
        if !spec.is_object() {
            spec = json!({});
        }
        spec["expirationSeconds"] = json!(seconds);
        if spec["audiences"].is_null() {
            spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": now()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }
}
