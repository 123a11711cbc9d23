//! Typed Graph operations the controllers use. Each states the permission a 403 most likely
//! lacks and whether it is safe to resend (see `client::Kind`).

use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use super::auth::{TokenProbe, request_client_credentials};
use super::client::{Call, GraphClient, Kind, encode, odata_str};
use super::error::{GraphError, OptionalExt, Permission};
use super::models::{
    AppRoleAssignment, Application, DirectoryObject, FederatedIdentityCredential, KeyCredential,
    NewPasswordCredential, OAuth2PermissionGrant, PasswordCredentialRequest, ServicePrincipal,
    TenantInformation, Upserted,
};
use super::secret::SecretString;

use Permission::{
    AppRoleAssignmentReadWriteAll as ROLE_ASSIGN, ApplicationReadAll as APP_READ,
    ApplicationReadWriteOwnedBy as APP_WRITE, CrossTenantInformationReadBasicAll as TENANT_READ,
    DelegatedPermissionGrantReadWriteAll as GRANTS, DirectoryReadAll as DIRECTORY_READ,
    UserReadAll as USER_READ,
};

const CREATE_IF_MISSING: &str = "create-if-missing";

/// What a service principal write refused with 403 most likely lacks, once the operator could not
/// make itself an owner of that service principal either.
pub const SERVICE_PRINCIPAL_OWNER_HINT: &str = "Directory.Read.All (with Application.ReadWrite.OwnedBy it makes itself an owner of the service principal, which a change to it needs; or Application.ReadWrite.All)";

fn app_keys(app: &Application) -> Vec<String> {
    [&app.id, &app.app_id, &app.unique_name]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// Replication keys of a service principal. Its appId is namespaced: the application with the same
/// appId being new says nothing about whether the service principal exists yet.
fn sp_keys(sp: &ServicePrincipal) -> Vec<String> {
    sp.id
        .iter()
        .cloned()
        .chain(sp.app_id.as_deref().map(sp_app_key))
        .collect()
}

fn app_by_app_id_call(app_id: &str) -> Call {
    Call::get(
        format!("/applications(appId={})", odata_str(app_id)),
        "/applications(appId=…)",
        APP_READ,
        2,
    )
    .keys([app_id])
}

/// `GET /{collection}/{id}?$select=id` (1 unit): whether a new object is visible yet.
fn visible_probe(collection: &str, template: &'static str, id: &str) -> Call {
    Call::get(
        format!("/{collection}/{}?$select=id", encode(id)),
        template,
        APP_READ,
        1,
    )
    .keys([id])
}

fn sp_app_key(app_id: &str) -> String {
    format!("servicePrincipal:{app_id}")
}

impl GraphClient {
    // ---- applications -------------------------------------------------------------------

    /// `GET /applications/{id}` by object id.
    pub async fn get_application(&self, id: &str) -> Result<Application, GraphError> {
        let call = Call::get(
            format!("/applications/{}", encode(id)),
            "/applications/{id}",
            APP_READ,
            2,
        )
        .keys([id]);
        self.fetch(&call).await
    }

    /// `GET /applications(appId='…')`.
    pub async fn get_application_by_app_id(&self, app_id: &str) -> Result<Application, GraphError> {
        self.fetch(&app_by_app_id_call(app_id)).await
    }

    /// `GET /applications(uniqueName='…')`.
    pub async fn get_application_by_unique_name(
        &self,
        unique_name: &str,
    ) -> Result<Application, GraphError> {
        let call = Call::get(
            format!("/applications(uniqueName={})", odata_str(unique_name)),
            "/applications(uniqueName=…)",
            APP_READ,
            2,
        )
        .keys([unique_name]);
        self.fetch(&call).await
    }

    /// `PATCH /applications(uniqueName='…')` with `Prefer: create-if-missing`. `body` must hold
    /// `displayName`; it is the whole desired state on create and the changed fields on update.
    /// `Created` carries the new application (id, appId); `Updated` has no body (Graph's 204).
    pub async fn upsert_application_by_unique_name(
        &self,
        unique_name: &str,
        body: &impl Serialize,
    ) -> Result<Upserted<Application>, GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!("/applications(uniqueName={})", odata_str(unique_name)),
            "/applications(uniqueName=…)",
            APP_WRITE,
            Kind::Write,
        )
        .json(body)?
        .prefer(CREATE_IF_MISSING)
        .keys([unique_name]);
        self.upsert(&call, app_keys).await
    }

    /// `PATCH /applications/{id}` with only the fields to change (a [`serde_json::Value`] or a
    /// partial [`Application`]). Collections sent replace the stored ones whole.
    pub async fn update_application(
        &self,
        id: &str,
        patch: &impl Serialize,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!("/applications/{}", encode(id)),
            "/applications/{id}",
            APP_WRITE,
            Kind::Write,
        )
        .json(patch)?
        .keys([id]);
        self.send(&call).await
    }

    /// `DELETE /applications/{id}` (soft delete: restorable for 30 days).
    pub async fn delete_application(&self, id: &str) -> Result<(), GraphError> {
        let call = Call::new(
            Method::DELETE,
            format!("/applications/{}", encode(id)),
            "/applications/{id}",
            APP_WRITE,
            Kind::Write,
        )
        .keys([id]);
        self.send(&call).await
    }

    /// `POST /applications/{id}/addPassword`. Returns the value, which Graph never shows again.
    ///
    /// Not idempotent: a second call mints a second secret. It is therefore not retried after a
    /// lost response or a 5xx (only after 429, a replication 404, or a refused connection). On
    /// error, the caller's state machine finds out what happened by listing the application's
    /// `passwordCredentials` for the nonce it put in `displayName`, and removes an orphan.
    pub async fn add_password(
        &self,
        application_id: &str,
        credential: &PasswordCredentialRequest,
    ) -> Result<NewPasswordCredential, GraphError> {
        let call = Call::new(
            Method::POST,
            format!("/applications/{}/addPassword", encode(application_id)),
            "/applications/{id}/addPassword",
            APP_WRITE,
            Kind::WriteOnce,
        )
        .json(&json!({ "passwordCredential": credential }))?
        .keys([application_id]);
        let probe = visible_probe("applications", "/applications/{id}", application_id);
        self.await_replicated(&probe).await?;
        self.fetch(&call).await
    }

    /// `POST /applications/{id}/removePassword`. A key that is already gone is success.
    ///
    /// Graph does not document its answer for an unknown `keyId`; rather than trusting an error
    /// message, a 400 or 404 is followed by a read of the application's `passwordCredentials`:
    /// the key is gone when the application no longer lists it, else the error stands.
    pub async fn remove_password(
        &self,
        application_id: &str,
        key_id: &str,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::POST,
            format!("/applications/{}/removePassword", encode(application_id)),
            "/applications/{id}/removePassword",
            APP_WRITE,
            Kind::Write,
        )
        .json(&json!({ "keyId": key_id }))?
        .keys([application_id]);
        match self.send(&call).await {
            Err(e @ (GraphError::BadRequest(_) | GraphError::NotFound(_))) => {
                self.credential_gone(application_id, key_id, e, false).await
            }
            other => other,
        }
    }

    /// After a 400/404 on removing a credential: `Ok` when the application (or the application
    /// itself) no longer holds `key_id`, else `error`.
    async fn credential_gone(
        &self,
        application_id: &str,
        key_id: &str,
        error: GraphError,
        certificate: bool,
    ) -> Result<(), GraphError> {
        let app = match self.get_application(application_id).await {
            Ok(app) => app,
            Err(GraphError::NotFound(_)) => return Ok(()),
            Err(_) => return Err(error),
        };
        let same =
            |k: &Option<String>| k.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(key_id));
        let still_there = if certificate {
            app.key_credentials
                .iter()
                .flatten()
                .any(|k| same(&k.key_id))
        } else {
            app.password_credentials
                .iter()
                .flatten()
                .any(|p| same(&p.key_id))
        };
        if still_there { Err(error) } else { Ok(()) }
    }

    /// `POST /applications/{id}/addKey`: adds a certificate. `proof` comes from
    /// [`super::CertificateAssertion::key_proof`] with a currently valid certificate of the app
    /// (with none yet, PATCH `keyCredentials` whole instead). Not retried after a lost response
    /// (a second call could add the key twice); returns the new key's metadata.
    pub async fn add_key(
        &self,
        application_id: &str,
        key_credential: &KeyCredential,
        proof: &str,
    ) -> Result<KeyCredential, GraphError> {
        let call = Call::new(
            Method::POST,
            format!("/applications/{}/addKey", encode(application_id)),
            "/applications/{id}/addKey",
            APP_WRITE,
            Kind::WriteOnce,
        )
        .json(&json!({
            "keyCredential": key_credential,
            "passwordCredential": null,
            "proof": proof,
        }))?
        .keys([application_id]);
        self.fetch(&call).await
    }

    /// `POST /applications/{id}/removeKey` with a proof of possession (see [`Self::add_key`]).
    pub async fn remove_key(
        &self,
        application_id: &str,
        key_id: &str,
        proof: &str,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::POST,
            format!("/applications/{}/removeKey", encode(application_id)),
            "/applications/{id}/removeKey",
            APP_WRITE,
            Kind::Write,
        )
        .json(&json!({ "keyId": key_id, "proof": proof }))?
        .keys([application_id]);
        match self.send(&call).await {
            Err(e @ (GraphError::BadRequest(_) | GraphError::NotFound(_))) => {
                self.credential_gone(application_id, key_id, e, true).await
            }
            other => other,
        }
    }

    // ---- federated identity credentials -------------------------------------------------

    /// `GET /applications/{id}/federatedIdentityCredentials`.
    pub async fn list_federated_identity_credentials(
        &self,
        application_id: &str,
    ) -> Result<Vec<FederatedIdentityCredential>, GraphError> {
        let call = Call::get(
            format!(
                "/applications/{}/federatedIdentityCredentials",
                encode(application_id)
            ),
            "/applications/{id}/federatedIdentityCredentials",
            APP_READ,
            1,
        )
        .keys([application_id]);
        self.list(call).await
    }

    /// `PATCH /applications/{id}/federatedIdentityCredentials(name='…')` with
    /// `Prefer: create-if-missing`. `name` is immutable, so it is the key.
    pub async fn upsert_federated_identity_credential(
        &self,
        application_id: &str,
        credential: &FederatedIdentityCredential,
    ) -> Result<Upserted<FederatedIdentityCredential>, GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!(
                "/applications/{}/federatedIdentityCredentials(name={})",
                encode(application_id),
                odata_str(&credential.name)
            ),
            "/applications/{id}/federatedIdentityCredentials(name=…)",
            APP_WRITE,
            Kind::Write,
        )
        .json(credential)?
        .prefer(CREATE_IF_MISSING)
        .keys([application_id]);
        self.upsert(&call, |_: &FederatedIdentityCredential| Vec::new())
            .await
    }

    /// `DELETE /applications/{id}/federatedIdentityCredentials/{credentialId}`.
    pub async fn delete_federated_identity_credential(
        &self,
        application_id: &str,
        credential_id: &str,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::DELETE,
            format!(
                "/applications/{}/federatedIdentityCredentials/{}",
                encode(application_id),
                encode(credential_id)
            ),
            "/applications/{id}/federatedIdentityCredentials/{id}",
            APP_WRITE,
            Kind::Write,
        );
        self.send(&call).await
    }

    // ---- owners ---------------------------------------------------------------------------

    /// `GET /applications/{id}/owners`.
    pub async fn list_application_owners(
        &self,
        application_id: &str,
    ) -> Result<Vec<DirectoryObject>, GraphError> {
        self.list_owners("applications", "/applications/{id}/owners", application_id)
            .await
    }

    /// `POST /applications/{id}/owners/$ref`. An owner that is already one is success.
    pub async fn add_application_owner(
        &self,
        application_id: &str,
        owner_object_id: &str,
    ) -> Result<(), GraphError> {
        self.add_owner(
            "applications",
            "/applications/{id}/owners/$ref",
            APP_WRITE,
            application_id,
            owner_object_id,
            &[application_id, owner_object_id],
        )
        .await
    }

    /// `GET /{collection}/{id}/owners`: the owners of an application or a service principal.
    async fn list_owners(
        &self,
        collection: &str,
        template: &'static str,
        id: &str,
    ) -> Result<Vec<DirectoryObject>, GraphError> {
        let call = Call::get(
            format!("/{collection}/{}/owners", encode(id)),
            template,
            APP_READ,
            1,
        )
        .keys([id]);
        self.list(call).await
    }

    /// `POST /{collection}/{id}/owners/$ref` with `owner_object_id`, under `permission`; an owner
    /// that is already one (Graph's 400 "already exist") is success. `keys`: the objects whose
    /// replication the write waits for.
    async fn add_owner(
        &self,
        collection: &str,
        template: &'static str,
        permission: Permission,
        id: &str,
        owner_object_id: &str,
        keys: &[&str],
    ) -> Result<(), GraphError> {
        let reference = format!(
            "{}/v1.0/directoryObjects/{}",
            self.inner.endpoint,
            encode(owner_object_id)
        );
        let call = Call::new(
            Method::POST,
            format!("/{collection}/{}/owners/$ref", encode(id)),
            template,
            permission,
            Kind::Write,
        )
        .json(&json!({ "@odata.id": reference }))?
        .keys(keys.iter().copied());
        match self.send(&call).await {
            Err(GraphError::Conflict(_)) => Ok(()),
            other => other,
        }
    }

    /// `DELETE /applications/{id}/owners/{ownerId}/$ref`: removes an owner (the directory object
    /// itself stays). An owner that is no longer one answers 404, which the caller may treat as done.
    /// [Remove owner](https://learn.microsoft.com/graph/api/application-delete-owners)
    pub async fn remove_application_owner(
        &self,
        application_id: &str,
        owner_object_id: &str,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::DELETE,
            format!(
                "/applications/{}/owners/{}/$ref",
                encode(application_id),
                encode(owner_object_id)
            ),
            "/applications/{id}/owners/{id}/$ref",
            APP_WRITE,
            Kind::Write,
        );
        // No replication keys: a 404 here means the owner is gone, and a successful DELETE must
        // not end the application's own "just created" window.
        self.send(&call).await
    }

    // ---- users ----------------------------------------------------------------------------

    /// `GET /users/{userPrincipalName}?$select=id`: the user with this user principal name, for
    /// its object ID (owners named by user principal name). Needs `User.Read.All`.
    /// [Get user](https://learn.microsoft.com/graph/api/user-get): a UPN starting with `$` is
    /// addressed as `/users('$…')` (the plain form would read as a system query option).
    ///
    /// An unknown user is `NotFound` at once, never replication: no replication keys, because
    /// the operator never creates users, so a 404 here is never its own write still on its way.
    pub async fn get_user_by_principal_name(
        &self,
        user_principal_name: &str,
    ) -> Result<DirectoryObject, GraphError> {
        let path = if user_principal_name.starts_with('$') {
            format!("/users({})?$select=id", odata_str(user_principal_name))
        } else {
            format!("/users/{}?$select=id", encode(user_principal_name))
        };
        let call = Call::get(path, "/users/{userPrincipalName}", USER_READ, 1);
        self.fetch(&call).await
    }

    // ---- service principals ---------------------------------------------------------------

    /// `GET /servicePrincipals(appId='…')`: the service principal of an app in this tenant.
    pub async fn get_service_principal_by_app_id(
        &self,
        app_id: &str,
    ) -> Result<ServicePrincipal, GraphError> {
        let call = Call::get(
            format!("/servicePrincipals(appId={})", odata_str(app_id)),
            "/servicePrincipals(appId=…)",
            APP_READ,
            1,
        )
        .keys([sp_app_key(app_id)]);
        self.fetch(&call).await
    }

    /// `PATCH /servicePrincipals(appId='…')` with `Prefer: create-if-missing`. Retries Graph's
    /// "does not reference a valid application object" while the new app replicates.
    ///
    /// A 403 when the service principal exists already (the upsert changed it rather than created
    /// it): the operator makes itself its owner and sends the upsert once more (see
    /// [`Self::update_service_principal`]).
    pub async fn upsert_service_principal_by_app_id(
        &self,
        app_id: &str,
        body: &impl Serialize,
    ) -> Result<Upserted<ServicePrincipal>, GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!("/servicePrincipals(appId={})", odata_str(app_id)),
            "/servicePrincipals(appId=…)",
            APP_WRITE,
            Kind::Write,
        )
        .json(body)?
        .prefer(CREATE_IF_MISSING)
        // The app's appId too: "no backing application" right after this client created the
        // app is replication delay.
        .keys([sp_app_key(app_id), app_id.to_string()])
        .retry_no_backing_app();
        self.await_replicated(&app_by_app_id_call(app_id)).await?;
        match self.upsert(&call, sp_keys).await {
            Err(refused @ GraphError::Forbidden { .. }) => {
                // Creating was refused (an application the operator does not own): nothing to own.
                let existing = self
                    .get_service_principal_by_app_id(app_id)
                    .await
                    .optional()?
                    .and_then(|sp| sp.id);
                let Some(id) = existing else {
                    return Err(refused);
                };
                self.become_service_principal_owner(&id, refused).await?;
                self.upsert(&call, sp_keys).await
            }
            other => other,
        }
    }

    /// `PATCH /servicePrincipals/{id}` with only the fields to change.
    ///
    /// Whether Graph makes the creator of a service principal its owner is undocumented; with
    /// `Application.ReadWrite.OwnedBy` only an owner may change it. So a 403 makes the operator add
    /// its own service principal as an owner (`POST …/owners/$ref`, which needs `Directory.Read.All`
    /// besides `OwnedBy`) and send the PATCH once more. Nothing is added before a write is refused:
    /// creating a service principal costs no extra write.
    pub async fn update_service_principal(
        &self,
        id: &str,
        patch: &impl Serialize,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!("/servicePrincipals/{}", encode(id)),
            "/servicePrincipals/{id}",
            APP_WRITE,
            Kind::Write,
        )
        .json(patch)?
        .keys([id]);
        match self.send(&call).await {
            Err(refused @ GraphError::Forbidden { .. }) => {
                self.become_service_principal_owner(id, refused).await?;
                self.send(&call).await
            }
            other => other,
        }
    }

    /// After `refused` (a 403 on a write to service principal `id`): adds the operator's own
    /// service principal as an owner of `id`. `Ok` when it is one now (also when it already was);
    /// `refused` itself, naming [`SERVICE_PRINCIPAL_OWNER_HINT`], when Graph refuses that too or
    /// the operator's object ID is unknown; any other error as it came.
    async fn become_service_principal_owner(
        &self,
        id: &str,
        refused: GraphError,
    ) -> Result<(), GraphError> {
        let GraphError::Forbidden { detail, .. } = refused else {
            return Err(refused);
        };
        let refused = GraphError::Forbidden {
            detail,
            likely_missing_permission: Some(SERVICE_PRINCIPAL_OWNER_HINT),
        };
        let Some(me) = self.own_service_principal_id().await? else {
            return Err(refused);
        };
        match self.add_service_principal_owner(id, &me).await {
            Ok(()) => Ok(()),
            Err(GraphError::Forbidden { .. }) => Err(refused),
            Err(e) => Err(e),
        }
    }

    /// The object ID of the operator's own service principal: the `oid` claim of its Graph token
    /// (in an app-only token, the client's service principal), else read by the token's appId.
    pub async fn own_service_principal_id(&self) -> Result<Option<String>, GraphError> {
        let claims = self.token_claims().await?;
        if let Some(oid) = claims.oid.as_deref().filter(|o| !o.is_empty()) {
            return Ok(Some(oid.to_string()));
        }
        let Some(app_id) = claims.client_app_id() else {
            return Ok(None);
        };
        Ok(self
            .get_service_principal_by_app_id(app_id)
            .await
            .optional()?
            .and_then(|sp| sp.id))
    }

    /// `GET /servicePrincipals/{id}/owners`.
    pub async fn list_service_principal_owners(
        &self,
        service_principal_id: &str,
    ) -> Result<Vec<DirectoryObject>, GraphError> {
        self.list_owners(
            "servicePrincipals",
            "/servicePrincipals/{id}/owners",
            service_principal_id,
        )
        .await
    }

    /// `POST /servicePrincipals/{id}/owners/$ref`. An owner that is already one is success.
    /// [Add owner](https://learn.microsoft.com/graph/api/serviceprincipal-post-owners): with
    /// `Application.ReadWrite.OwnedBy` it also needs `Directory.Read.All`.
    pub async fn add_service_principal_owner(
        &self,
        service_principal_id: &str,
        owner_object_id: &str,
    ) -> Result<(), GraphError> {
        self.add_owner(
            "servicePrincipals",
            "/servicePrincipals/{id}/owners/$ref",
            DIRECTORY_READ,
            service_principal_id,
            owner_object_id,
            &[service_principal_id],
        )
        .await
    }

    // ---- application permissions (app role assignments) -----------------------------------

    /// `GET /servicePrincipals/{id}/appRoleAssignments`: the app roles granted to this principal.
    pub async fn list_app_role_assignments(
        &self,
        service_principal_id: &str,
    ) -> Result<Vec<AppRoleAssignment>, GraphError> {
        let call = Call::get(
            format!(
                "/servicePrincipals/{}/appRoleAssignments",
                encode(service_principal_id)
            ),
            "/servicePrincipals/{id}/appRoleAssignments",
            APP_READ,
            2,
        )
        .keys([service_principal_id]);
        self.list(call).await
    }

    /// `POST /servicePrincipals/{resourceId}/appRoleAssignedTo`: grants an application permission
    /// (admin consent for an app role). An assignment that already exists (Graph answers 400 or
    /// 409) is found among the principal's assignments and returned; the error stands otherwise.
    pub async fn create_app_role_assignment(
        &self,
        resource_service_principal_id: &str,
        principal_id: &str,
        app_role_id: &str,
    ) -> Result<AppRoleAssignment, GraphError> {
        let body = AppRoleAssignment {
            principal_id: principal_id.into(),
            resource_id: resource_service_principal_id.into(),
            app_role_id: app_role_id.into(),
            ..Default::default()
        };
        let call = Call::new(
            Method::POST,
            format!(
                "/servicePrincipals/{}/appRoleAssignedTo",
                encode(resource_service_principal_id)
            ),
            "/servicePrincipals/{id}/appRoleAssignedTo",
            ROLE_ASSIGN,
            Kind::Write,
        )
        .json(&body)?
        .keys([resource_service_principal_id, principal_id]);
        for sp in [principal_id, resource_service_principal_id] {
            let probe = visible_probe("servicePrincipals", "/servicePrincipals/{id}", sp);
            self.await_replicated(&probe).await?;
        }
        match self.fetch(&call).await {
            Err(e @ (GraphError::Conflict(_) | GraphError::BadRequest(_))) => {
                let existing = self
                    .list_app_role_assignments(principal_id)
                    .await
                    .ok()
                    .into_iter()
                    .flatten()
                    .find(|a| {
                        a.resource_id
                            .eq_ignore_ascii_case(resource_service_principal_id)
                            && a.app_role_id.eq_ignore_ascii_case(app_role_id)
                    });
                existing.ok_or(e)
            }
            other => other,
        }
    }

    /// `DELETE /servicePrincipals/{resourceId}/appRoleAssignedTo/{assignmentId}`: revokes an
    /// application permission. An assignment already gone answers 404.
    /// [Delete appRoleAssignedTo](https://learn.microsoft.com/graph/api/serviceprincipal-delete-approleassignedto)
    pub async fn delete_app_role_assignment(
        &self,
        resource_service_principal_id: &str,
        assignment_id: &str,
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::DELETE,
            format!(
                "/servicePrincipals/{}/appRoleAssignedTo/{}",
                encode(resource_service_principal_id),
                encode(assignment_id)
            ),
            "/servicePrincipals/{id}/appRoleAssignedTo/{id}",
            ROLE_ASSIGN,
            Kind::Write,
        );
        self.send(&call).await
    }

    // ---- delegated permissions (oauth2PermissionGrants) ----------------------------------

    /// Tenant-wide delegated grants of a client:
    /// `GET /oauth2PermissionGrants?$filter=clientId eq '…' and consentType eq 'AllPrincipals'`.
    pub async fn list_oauth2_permission_grants(
        &self,
        client_service_principal_id: &str,
    ) -> Result<Vec<OAuth2PermissionGrant>, GraphError> {
        let filter = format!(
            "clientId eq '{}' and consentType eq 'AllPrincipals'",
            client_service_principal_id.replace('\'', "''")
        );
        let call = Call::get(
            format!("/oauth2PermissionGrants?$filter={}", encode(&filter)),
            "/oauth2PermissionGrants?$filter=clientId…",
            GRANTS,
            2,
        )
        .keys([client_service_principal_id]);
        self.list(call).await
    }

    /// `POST /oauth2PermissionGrants` with `consentType: AllPrincipals` (admin consent for
    /// delegated `scopes`).
    ///
    /// A grant for the same client, resource and consent type may already exist although the list
    /// did not show it (the list lags fresh grants): Graph answers 409
    /// `Request_MultipleObjectsWithSameKeyValue`. Then the existing grant is looked up (waiting
    /// out the list's replication delay, bounded by the retry policy), extended with the missing
    /// scopes, and returned.
    pub async fn create_oauth2_permission_grant(
        &self,
        client_service_principal_id: &str,
        resource_service_principal_id: &str,
        scopes: &[&str],
    ) -> Result<OAuth2PermissionGrant, GraphError> {
        let body = OAuth2PermissionGrant {
            client_id: client_service_principal_id.into(),
            consent_type: "AllPrincipals".into(),
            resource_id: resource_service_principal_id.into(),
            scope: scopes.join(" "),
            ..Default::default()
        };
        let call = Call::new(
            Method::POST,
            "/oauth2PermissionGrants".into(),
            "/oauth2PermissionGrants",
            GRANTS,
            Kind::Write,
        )
        .json(&body)?
        .keys([client_service_principal_id, resource_service_principal_id]);
        for sp in [client_service_principal_id, resource_service_principal_id] {
            let probe = visible_probe("servicePrincipals", "/servicePrincipals/{id}", sp);
            self.await_replicated(&probe).await?;
        }
        match self.fetch(&call).await {
            Err(GraphError::Conflict(detail)) => {
                self.existing_grant(
                    client_service_principal_id,
                    resource_service_principal_id,
                    scopes,
                    detail,
                )
                .await
            }
            other => other,
        }
    }

    async fn existing_grant(
        &self,
        client_service_principal_id: &str,
        resource_service_principal_id: &str,
        scopes: &[&str],
        conflict: super::error::ErrorDetail,
    ) -> Result<OAuth2PermissionGrant, GraphError> {
        let retry = &self.inner.retry;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            let found = self
                .list_oauth2_permission_grants(client_service_principal_id)
                .await?
                .into_iter()
                .find(|g| {
                    g.resource_id
                        .eq_ignore_ascii_case(resource_service_principal_id)
                });
            if let Some(mut grant) = found {
                let mut have: Vec<&str> = grant.scope.split_whitespace().collect();
                let missing: Vec<&str> = scopes
                    .iter()
                    .copied()
                    .filter(|s| !have.contains(s))
                    .collect();
                if !missing.is_empty()
                    && let Some(id) = grant.id.clone()
                {
                    have.extend(missing);
                    self.update_oauth2_permission_grant(&id, &have).await?;
                    grant.scope = have.join(" ");
                }
                return Ok(grant);
            }
            if !retry.replication_in_place {
                // The grant exists (409) but the list does not show it yet: come back later.
                return Err(GraphError::Replicating(conflict));
            }
            if started.elapsed() >= retry.replication_timeout {
                return Err(GraphError::Conflict(conflict));
            }
            tokio::time::sleep(retry.replication_backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// `PATCH /oauth2PermissionGrants/{id} {scope}`: replaces the granted scopes.
    pub async fn update_oauth2_permission_grant(
        &self,
        grant_id: &str,
        scopes: &[&str],
    ) -> Result<(), GraphError> {
        let call = Call::new(
            Method::PATCH,
            format!("/oauth2PermissionGrants/{}", encode(grant_id)),
            "/oauth2PermissionGrants/{id}",
            GRANTS,
            Kind::Write,
        )
        .json(&json!({ "scope": scopes.join(" ") }))?;
        self.send(&call).await
    }

    /// `DELETE /oauth2PermissionGrants/{id}`: revokes a delegated grant whole. A grant already gone
    /// answers 404.
    /// [Delete oAuth2PermissionGrant](https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete)
    pub async fn delete_oauth2_permission_grant(&self, grant_id: &str) -> Result<(), GraphError> {
        let call = Call::new(
            Method::DELETE,
            format!("/oauth2PermissionGrants/{}", encode(grant_id)),
            "/oauth2PermissionGrants/{id}",
            GRANTS,
            Kind::Write,
        );
        self.send(&call).await
    }

    // ---- tenants --------------------------------------------------------------------------

    /// `GET /tenantRelationships/findTenantInformationByTenantId(tenantId='…')`. An unknown tenant
    /// is `NotFound`.
    pub async fn find_tenant_information(
        &self,
        tenant_id: &str,
    ) -> Result<TenantInformation, GraphError> {
        let call = Call::get(
            format!(
                "/tenantRelationships/findTenantInformationByTenantId(tenantId={})",
                odata_str(tenant_id)
            ),
            "/tenantRelationships/findTenantInformationByTenantId(tenantId=…)",
            TENANT_READ,
            1,
        );
        self.fetch(&call).await
    }

    /// Requests a client-credentials token for `client_id` in `tenant_id` with the app's own
    /// secret, through the configured authority host and trust. `Issued` carries the token's
    /// claims (`roles` = application permissions granted there); `Rejected` carries the AADSTS
    /// code, where `is_not_consented()` (AADSTS700016) means no admin consented in that tenant.
    /// `scope` is e.g. `api://<api-app-id>/.default` or `https://graph.microsoft.com/.default`.
    pub async fn probe_client_credentials(
        &self,
        tenant_id: &str,
        client_id: &str,
        client_secret: &SecretString,
        scope: &str,
    ) -> Result<TokenProbe, GraphError> {
        request_client_credentials(
            &self.inner.http,
            &self.inner.authority_host,
            tenant_id,
            client_id,
            client_secret,
            scope,
        )
        .await
    }
}
