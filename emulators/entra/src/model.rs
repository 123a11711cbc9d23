//! The directory: tenants and the objects in them, plus how each object renders as Graph JSON.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::config::{Switches, TenantSpec, UserSpec};
use crate::log::RequestLog;
use crate::msgraph;
use crate::throttle::Throttle;
use crate::util::{fmt_ts, new_guid};

pub(crate) struct State {
    pub(crate) tenants: BTreeMap<String, Tenant>,
    pub(crate) switches: Switches,
    pub(crate) clock_offset_ms: i64,
    /// Change sequence for delta queries: the last value [`State::next_seq`] handed out. Every
    /// object gets one when created (the built-in ones too), so an initial delta round returns
    /// them all and `$deltatoken=latest` (which starts after `seq`) returns none of them.
    pub(crate) seq: u64,
    pub(crate) log: RequestLog,
    pub(crate) throttle: Throttle,
    /// appId → (tenant id, object id) of the application object, wherever it lives.
    pub(crate) app_home: HashMap<String, (String, String)>,
    pub(crate) home_tenant_id: String,
    /// Schema contract violations seen while the `schemaContract` switch was on.
    pub(crate) contract_violations: Vec<Value>,
}

impl State {
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::now() + jiff::SignedDuration::from_millis(self.clock_offset_ms)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(crate) fn visible_at(&self) -> Timestamp {
        self.now() + jiff::SignedDuration::from_millis(self.switches.replication_delay_ms as i64)
    }

    pub(crate) fn credential_usable_at(&self) -> Timestamp {
        self.now() + jiff::SignedDuration::from_millis(self.switches.credential_delay_ms as i64)
    }

    /// The application object behind an appId, in whichever tenant registered it.
    pub(crate) fn app_by_app_id(&self, app_id: &str) -> Option<(&Tenant, &App)> {
        let (tid, oid) = self.app_home.get(app_id)?;
        let tenant = self.tenants.get(tid)?;
        Some((tenant, tenant.apps.get(oid)?))
    }

    /// Resolves a tenant by id or by one of its domains.
    pub(crate) fn resolve_tenant(&self, key: &str) -> Option<&Tenant> {
        let key_lower = key.to_ascii_lowercase();
        self.tenants.get(&key_lower).or_else(|| {
            self.tenants
                .values()
                .find(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(key)))
        })
    }

    pub(crate) fn add_tenant(&mut self, spec: &TenantSpec) -> String {
        let id = spec.tenant_id().to_ascii_lowercase();
        if self.tenants.contains_key(&id) {
            return id;
        }
        let default_domain = format!("{}.onmicrosoft.com", spec.name.to_ascii_lowercase());
        let mut domains = vec![default_domain.clone()];
        domains.extend(spec.verified_domains.iter().cloned());
        let now = self.now();
        let graph_sp_seq = self.next_seq();
        let mut tenant = Tenant {
            id: id.clone(),
            display_name: spec
                .display_name
                .clone()
                .unwrap_or_else(|| spec.name.clone()),
            default_domain,
            domains,
            user_count: spec.user_count,
            apps: BTreeMap::new(),
            sps: BTreeMap::new(),
            grants: BTreeMap::new(),
            grants_listed_at: BTreeMap::new(),
            assignments: BTreeMap::new(),
            tombstones: Vec::new(),
            sp_tombstones: Vec::new(),
            users: BTreeMap::new(),
            index: Index::default(),
        };
        tenant.insert_sp(Sp::builtin_graph(now, graph_sp_seq));
        self.tenants.insert(id.clone(), tenant);
        id
    }

    /// Creates a user in `tenant_id` (the home tenant when `None`); `id` defaults to a new GUID.
    /// Refuses an unknown tenant, a UPN without `@`, and a UPN or id the tenant already has.
    pub(crate) fn add_user(&mut self, spec: &UserSpec) -> Result<User, String> {
        let tenant_id = spec
            .tenant_id
            .clone()
            .unwrap_or_else(|| self.home_tenant_id.clone())
            .to_ascii_lowercase();
        let Some(tenant) = self.tenants.get_mut(&tenant_id) else {
            return Err(format!("unknown tenant {tenant_id}"));
        };
        let upn = spec.user_principal_name.trim();
        if !upn.contains('@') {
            return Err(format!("userPrincipalName {upn:?} must contain @"));
        }
        let id = spec
            .id
            .clone()
            .unwrap_or_else(new_guid)
            .to_ascii_lowercase();
        if tenant.users.contains_key(&id) || tenant.user(upn).is_some() {
            return Err(format!(
                "a user with id {id} or userPrincipalName {upn} exists"
            ));
        }
        let user = User {
            id: id.clone(),
            user_principal_name: upn.to_string(),
            display_name: spec
                .display_name
                .clone()
                .unwrap_or_else(|| upn.split('@').next().unwrap_or(upn).to_string()),
        };
        tenant.users.insert(id, user.clone());
        Ok(user)
    }

    /// Roles (values) granted to `client_app_id` on the resource SP `resource_sp_id` in `tenant`.
    pub(crate) fn granted_roles(
        &self,
        tenant: &Tenant,
        client_sp_id: &str,
        resource_sp_id: &str,
    ) -> Vec<String> {
        let Some(resource) = tenant.sps.get(resource_sp_id) else {
            return Vec::new();
        };
        let roles = self.sp_app_roles(resource);
        let mut out: Vec<String> = tenant
            .assignments
            .values()
            .filter(|a| a.principal_id == client_sp_id && a.resource_id == resource_sp_id)
            .filter_map(|a| {
                roles
                    .iter()
                    .find(|r| r["id"] == a.app_role_id.as_str())
                    .and_then(|r| r["value"].as_str().map(str::to_string))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The app roles an SP publishes: its own (built-in) or its application's.
    pub(crate) fn sp_app_roles(&self, sp: &Sp) -> Vec<Value> {
        if let Some(v) = sp.props.get("appRoles") {
            return v.as_array().cloned().unwrap_or_default();
        }
        let mut roles = self
            .app_by_app_id(&sp.app_id)
            .and_then(|(_, app)| app.props.get("appRoles").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        for r in roles.iter_mut().filter_map(Value::as_object_mut) {
            r.insert("origin".into(), json!("Application"));
        }
        roles
    }

    pub(crate) fn sp_scopes(&self, sp: &Sp) -> Vec<Value> {
        if let Some(v) = sp.props.get("oauth2PermissionScopes") {
            return v.as_array().cloned().unwrap_or_default();
        }
        self.app_by_app_id(&sp.app_id)
            .and_then(|(_, app)| {
                app.props
                    .get("api")
                    .and_then(|a| a.get("oauth2PermissionScopes"))
                    .and_then(Value::as_array)
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// Names a token request may use for the resource behind `sp` (appId, identifier URIs).
    pub(crate) fn sp_names(&self, sp: &Sp) -> Vec<String> {
        if let Some(v) = sp
            .props
            .get("servicePrincipalNames")
            .and_then(Value::as_array)
        {
            return v
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
        }
        let mut names = vec![sp.app_id.clone()];
        if let Some((_, app)) = self.app_by_app_id(&sp.app_id)
            && let Some(uris) = app.props.get("identifierUris").and_then(Value::as_array)
        {
            names.extend(uris.iter().filter_map(|u| u.as_str().map(str::to_string)));
        }
        names
    }

    /// Graph JSON of a service principal, with what it inherits from its application.
    pub(crate) fn render_sp(&self, tenant: &Tenant, sp: &Sp) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(sp.id));
        out.insert("deletedDateTime".into(), Value::Null);
        out.insert("appId".into(), json!(sp.app_id));
        let app = self.app_by_app_id(&sp.app_id);
        let app_tags: Vec<Value> = app
            .and_then(|(_, a)| a.props.get("tags").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        if let Some((home, app)) = app {
            let p = &app.props;
            out.insert("appDisplayName".into(), p["displayName"].clone());
            out.insert(
                "appDescription".into(),
                p.get("description").cloned().unwrap_or(Value::Null),
            );
            out.insert("appOwnerOrganizationId".into(), json!(home.id));
            out.insert(
                "signInAudience".into(),
                p.get("signInAudience").cloned().unwrap_or(Value::Null),
            );
            out.insert(
                "replyUrls".into(),
                p.get("web")
                    .and_then(|w| w.get("redirectUris"))
                    .cloned()
                    .unwrap_or(json!([])),
            );
            out.insert(
                "homepage".into(),
                p.get("web")
                    .and_then(|w| w.get("homePageUrl"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            out.insert("displayName".into(), p["displayName"].clone());
        }
        out.insert("servicePrincipalType".into(), json!("Application"));
        out.insert("accountEnabled".into(), json!(true));
        out.insert("appRoleAssignmentRequired".into(), json!(false));
        out.insert("notes".into(), Value::Null);
        out.insert("keyCredentials".into(), json!([]));
        out.insert("passwordCredentials".into(), json!([]));
        out.insert("alternativeNames".into(), json!([]));
        out.insert("preferredSingleSignOnMode".into(), Value::Null);
        for (k, v) in &sp.props {
            out.insert(k.clone(), v.clone());
        }
        // The SP's tags are the union of its own and its application's.
        let mut tags: Vec<Value> = sp
            .props
            .get("tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in app_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        out.insert("tags".into(), Value::Array(tags));
        out.insert("appRoles".into(), Value::Array(self.sp_app_roles(sp)));
        out.insert(
            "oauth2PermissionScopes".into(),
            Value::Array(self.sp_scopes(sp)),
        );
        out.insert(
            "servicePrincipalNames".into(),
            Value::Array(self.sp_names(sp).into_iter().map(Value::String).collect()),
        );
        // v1.0 publishes no createdDateTime on servicePrincipal (the schema contract checks it).
        if !out.contains_key("appOwnerOrganizationId") {
            out.insert("appOwnerOrganizationId".into(), Value::Null);
        }
        let _ = tenant;
        Value::Object(out)
    }
}

pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) default_domain: String,
    pub(crate) domains: Vec<String>,
    pub(crate) user_count: u32,
    pub(crate) apps: BTreeMap<String, App>,
    pub(crate) sps: BTreeMap<String, Sp>,
    pub(crate) grants: BTreeMap<String, Map<String, Value>>,
    /// When each grant becomes visible to the grant list (replication delay).
    pub(crate) grants_listed_at: BTreeMap<String, Timestamp>,
    pub(crate) assignments: BTreeMap<String, Assignment>,
    /// (seq, object id, reason) of applications deleted, for delta.
    pub(crate) tombstones: Vec<(u64, String, &'static str)>,
    /// (seq, object id) of service principals deleted, for delta. The emulator has no soft delete
    /// for service principals (`DELETE` removes one for good), so delta reports each with reason
    /// `deleted`.
    pub(crate) sp_tombstones: Vec<(u64, String)>,
    /// Users by object id (lowercase): created through the control API only.
    pub(crate) users: BTreeMap<String, User>,
    /// Object ids by appId and uniqueName, so lookups by either do not scan the tenant (the
    /// emulator must not be what a test with 10,000 applications measures). Filled by
    /// [`Tenant::insert_app`] and [`Tenant::insert_sp`]; both keys are immutable in Graph, and a
    /// lookup checks the object it finds, so an object removed since is skipped.
    pub(crate) index: Index,
}

/// Lowercase appId / uniqueName → object ids (several: a deleted application keeps its name).
#[derive(Default)]
pub(crate) struct Index {
    apps_by_app_id: HashMap<String, Vec<String>>,
    apps_by_unique_name: HashMap<String, Vec<String>>,
    sps_by_app_id: HashMap<String, Vec<String>>,
}

impl Index {
    fn add(map: &mut HashMap<String, Vec<String>>, key: &str, id: &str) {
        map.entry(key.to_ascii_lowercase())
            .or_default()
            .push(id.to_string());
    }
}

impl Tenant {
    /// Adds (or replaces) an application, indexed by appId and uniqueName.
    pub(crate) fn insert_app(&mut self, app: App) {
        let index = &mut self.index;
        Index::add(&mut index.apps_by_app_id, &app.app_id, &app.id);
        if let Some(u) = app.unique_name() {
            Index::add(&mut index.apps_by_unique_name, u, &app.id);
        }
        self.apps.insert(app.id.clone(), app);
    }

    /// Adds (or replaces) a service principal, indexed by appId.
    pub(crate) fn insert_sp(&mut self, sp: Sp) {
        Index::add(&mut self.index.sps_by_app_id, &sp.app_id, &sp.id);
        self.sps.insert(sp.id.clone(), sp);
    }

    pub(crate) fn sp_by_app_id(&self, app_id: &str) -> Option<&Sp> {
        self.index
            .sps_by_app_id
            .get(&app_id.to_ascii_lowercase())?
            .iter()
            .filter_map(|id| self.sps.get(id))
            .find(|s| s.app_id.eq_ignore_ascii_case(app_id))
    }

    pub(crate) fn app_by_app_id(&self, app_id: &str) -> Option<&App> {
        self.index
            .apps_by_app_id
            .get(&app_id.to_ascii_lowercase())?
            .iter()
            .filter_map(|id| self.apps.get(id))
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    /// Applications whose uniqueName is `name` (case-insensitive), deleted ones included.
    pub(crate) fn apps_by_unique_name<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a App> {
        self.index
            .apps_by_unique_name
            .get(&name.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|id| self.apps.get(id))
            .filter(move |a| {
                a.unique_name()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
    }

    /// The user addressed as `/users/{id | userPrincipalName}`: by object id, else by UPN
    /// (case-insensitive, as Entra compares UPNs).
    pub(crate) fn user(&self, key: &str) -> Option<&User> {
        self.users.get(&key.to_ascii_lowercase()).or_else(|| {
            self.users
                .values()
                .find(|u| u.user_principal_name.eq_ignore_ascii_case(key))
        })
    }

    pub(crate) fn info(&self) -> Value {
        json!({
            "tenantId": self.id,
            "displayName": self.display_name,
            "defaultDomainName": self.default_domain,
            "federationBrandName": Value::Null,
        })
    }
}

/// A user: only what resolving owners by name needs (`id`, `userPrincipalName`, `displayName`).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) user_principal_name: String,
    pub(crate) display_name: String,
}

impl User {
    /// The user as `GET /users/{id}` answers without `$select`: Graph's default properties
    /// ("Get user", https://learn.microsoft.com/graph/api/user-get: businessPhones, displayName,
    /// givenName, id, jobTitle, mail, mobilePhone, officeLocation, preferredLanguage, surname,
    /// userPrincipalName); the ones not modelled are empty.
    pub(crate) fn render(&self) -> Value {
        json!({
            "businessPhones": [],
            "displayName": self.display_name,
            "givenName": null,
            "jobTitle": null,
            "mail": null,
            "mobilePhone": null,
            "officeLocation": null,
            "preferredLanguage": null,
            "surname": null,
            "userPrincipalName": self.user_principal_name,
            "id": self.id,
        })
    }
}

pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) app_id: String,
    /// Every Graph property except id, appId, credentials and timestamps.
    pub(crate) props: Map<String, Value>,
    pub(crate) created: Timestamp,
    pub(crate) visible_at: Timestamp,
    pub(crate) deleted_at: Option<Timestamp>,
    pub(crate) passwords: Vec<Password>,
    pub(crate) keys: Vec<KeyCred>,
    pub(crate) fics: Vec<Map<String, Value>>,
    pub(crate) owners: Vec<String>,
    pub(crate) changed_seq: u64,
}

impl App {
    pub(crate) fn visible(&self, now: Timestamp) -> bool {
        self.deleted_at.is_none() && self.visible_at <= now
    }

    pub(crate) fn unique_name(&self) -> Option<&str> {
        self.props.get("uniqueName").and_then(Value::as_str)
    }

    pub(crate) fn multi_tenant(&self) -> bool {
        matches!(
            self.props.get("signInAudience").and_then(Value::as_str),
            Some("AzureADMultipleOrgs") | Some("AzureADandPersonalMicrosoftAccount")
        )
    }

    pub(crate) fn render(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert(
            "deletedDateTime".into(),
            self.deleted_at
                .map(|d| json!(fmt_ts(d)))
                .unwrap_or(Value::Null),
        );
        out.insert("appId".into(), json!(self.app_id));
        out.insert("createdDateTime".into(), json!(fmt_ts(self.created)));
        for (k, v) in &self.props {
            out.insert(k.clone(), v.clone());
        }
        // Graph adds the read-only `origin` to every role it returns.
        if let Some(Value::Array(roles)) = out.get_mut("appRoles") {
            for r in roles.iter_mut().filter_map(Value::as_object_mut) {
                r.insert("origin".into(), json!("Application"));
            }
        }
        out.insert(
            "passwordCredentials".into(),
            Value::Array(self.passwords.iter().map(Password::render).collect()),
        );
        out.insert(
            "keyCredentials".into(),
            Value::Array(self.keys.iter().map(KeyCred::render).collect()),
        );
        Value::Object(out)
    }

    /// Default property values of a new application, as Graph returns them.
    pub(crate) fn default_props(publisher_domain: &str) -> Map<String, Value> {
        let v = json!({
            "applicationTemplateId": null,
            "disabledByMicrosoftStatus": null,
            "displayName": null,
            "description": null,
            "groupMembershipClaims": null,
            "identifierUris": [],
            "isDeviceOnlyAuthSupported": null,
            "isFallbackPublicClient": null,
            "nativeAuthenticationApisEnabled": null,
            "notes": null,
            "publisherDomain": publisher_domain,
            "serviceManagementReference": null,
            "signInAudience": "AzureADMyOrg",
            "tags": [],
            "tokenEncryptionKeyId": null,
            "uniqueName": null,
            "samlMetadataUrl": null,
            "defaultRedirectUri": null,
            "certification": null,
            "optionalClaims": null,
            "requestSignatureVerification": null,
            "addIns": [],
            "api": {
                "acceptMappedClaims": null,
                "knownClientApplications": [],
                "requestedAccessTokenVersion": null,
                "oauth2PermissionScopes": [],
                "preAuthorizedApplications": []
            },
            "appRoles": [],
            "info": {
                "logoUrl": null,
                "marketingUrl": null,
                "privacyStatementUrl": null,
                "supportUrl": null,
                "termsOfServiceUrl": null
            },
            "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
            "publicClient": {"redirectUris": []},
            "requiredResourceAccess": [],
            "verifiedPublisher": {"displayName": null, "verifiedPublisherId": null, "addedDateTime": null},
            "web": {
                "homePageUrl": null,
                "logoutUrl": null,
                "redirectUris": [],
                "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false},
                "redirectUriSettings": []
            },
            "spa": {"redirectUris": []}
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }
}

pub(crate) struct Password {
    pub(crate) key_id: String,
    pub(crate) display_name: Option<String>,
    pub(crate) hint: String,
    /// SHA-256 of the secret text; the text itself is never kept.
    pub(crate) hash: Vec<u8>,
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
    pub(crate) usable_at: Timestamp,
}

impl Password {
    pub(crate) fn render(&self) -> Value {
        json!({
            "customKeyIdentifier": null,
            "displayName": self.display_name,
            "endDateTime": fmt_ts(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": null,
            "startDateTime": fmt_ts(self.start),
        })
    }
}

pub(crate) struct KeyCred {
    pub(crate) key_id: String,
    pub(crate) display_name: Option<String>,
    pub(crate) key_type: String,
    pub(crate) usage: String,
    pub(crate) der: Vec<u8>,
    pub(crate) cert: crate::crypto::CertInfo,
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
    pub(crate) usable_at: Timestamp,
}

impl KeyCred {
    pub(crate) fn render(&self) -> Value {
        json!({
            "customKeyIdentifier": crate::util::b64(&self.cert.sha1),
            "displayName": self.display_name,
            "endDateTime": fmt_ts(self.end),
            "key": null,
            "keyId": self.key_id,
            "startDateTime": fmt_ts(self.start),
            "type": self.key_type,
            "usage": self.usage,
        })
    }
}

pub(crate) struct Sp {
    pub(crate) id: String,
    pub(crate) app_id: String,
    /// Own properties (PATCHed ones, and for built-ins everything).
    pub(crate) props: Map<String, Value>,
    pub(crate) created: Timestamp,
    pub(crate) visible_at: Timestamp,
    /// Object ids of its owners (lowercase). A new service principal has none: Graph does not
    /// document that its creator becomes an owner, so the emulator takes the stricter reading.
    pub(crate) owners: Vec<String>,
    /// [`State::next_seq`] at its last change, for `servicePrincipals/delta`: set on create and
    /// bumped by every write to the service principal itself (PATCH, owners). App role assignments
    /// and delegated permission grants are objects of their own and leave it alone (see
    /// `graph/delta.rs`).
    pub(crate) changed_seq: u64,
}

impl Sp {
    pub(crate) fn visible(&self, now: Timestamp) -> bool {
        self.visible_at <= now
    }

    /// A new service principal; `changed_seq` comes from [`State::next_seq`].
    pub(crate) fn new(
        app_id: &str,
        created: Timestamp,
        visible_at: Timestamp,
        changed_seq: u64,
    ) -> Self {
        Self {
            id: new_guid(),
            app_id: app_id.to_string(),
            props: Map::new(),
            created,
            visible_at,
            owners: Vec::new(),
            changed_seq,
        }
    }

    fn builtin_graph(now: Timestamp, changed_seq: u64) -> Self {
        let props = json!({
            "displayName": "Microsoft Graph",
            "appDisplayName": "Microsoft Graph",
            "appOwnerOrganizationId": msgraph::MICROSOFT_SERVICES_TENANT,
            "signInAudience": "AzureADMultipleOrgs",
            "servicePrincipalType": "Application",
            "appRoles": msgraph::app_roles(),
            "oauth2PermissionScopes": msgraph::scopes(),
            "servicePrincipalNames": msgraph::service_principal_names(),
            "tags": [],
        });
        let Value::Object(props) = props else {
            unreachable!()
        };
        Self {
            id: new_guid(),
            app_id: msgraph::GRAPH_APP_ID.to_string(),
            props,
            created: now,
            visible_at: now,
            owners: Vec::new(),
            changed_seq,
        }
    }
}

pub(crate) struct Assignment {
    pub(crate) id: String,
    pub(crate) app_role_id: String,
    pub(crate) principal_id: String,
    pub(crate) resource_id: String,
    pub(crate) created: Timestamp,
}

impl Assignment {
    pub(crate) fn render(&self, principal_name: &Value, resource_name: &Value) -> Value {
        json!({
            "id": self.id,
            "deletedDateTime": null,
            "appRoleId": self.app_role_id,
            "createdDateTime": fmt_ts(self.created),
            "principalDisplayName": principal_name,
            "principalId": self.principal_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource_name,
            "resourceId": self.resource_id,
        })
    }
}
