//! Client-secret rotation as a pure state machine, and the Secret that receives the value.
//!
//! The state of a rotation lives in the AppRegistration's status, so that a crash between any two
//! steps recovers without a lost value or an orphaned credential (ARCHITECTURE.md, "Credentials
//! and rotation"). [`plan_password_rotation`] looks at the spec, the status entry, the app's
//! password credentials in Graph and the Secret, and returns the one next step; the controller
//! executes it, persists [`CredentialPlan::status`], observes again and calls again until
//! [`CredentialAction::Idle`].
//!
//! Order of concerns in each call:
//! 1. a pending rotation whose credential exists: complete it (the Secret holds it), write the
//!    Secret (the value is still in memory), or remove it (the value is lost);
//! 2. adopt a credential of ours that the Secret holds when status has none;
//! 3. remove orphans (our marker, this Secret, neither current, previous nor pending);
//! 4. forget a previous credential that vanished, or remove it once its revoke time passed;
//! 5. a pending rotation with nothing carrying its nonce: `addPassword`;
//! 6. start a rotation when one is due (write-ahead: the pending record first);
//! 7. refresh status fields from Graph, or wait until the next renewal or revocation.
//!
//! Driving it, per declared password (the controller's loop):
//! - observe: the status entry with this `secretName` (the one this process last persisted, not a
//!   possibly stale cache copy), the app's `passwordCredentials` mapped to [`ObservedPassword`],
//!   the Secret read with [`ObservedSecret::from_secret`], the rotate annotation; pass
//!   [`new_nonce`] as `fresh_nonce` and the clock as `now`;
//! - execute the action; on success persist `plan.status` into `status.credentials` before the
//!   next external call whenever it differs from what was persisted (for `RecordPending` this is
//!   the write-ahead record and must land before `addPassword`);
//! - keep an `addPassword` response only in memory and pass it as `added` to the following calls
//!   until `Idle`; render the Secret for `WriteSecret` with [`render_secret`];
//! - treat a 404 from `removePassword` as done; stop at the first failure and requeue with
//!   backoff: the next call resumes from whatever landed;
//! - emit an event when `plan.reason.starts_rotation()` and on `RotationComplete`,
//!   `RecoverLostValue`, `RevokePrevious`, `RemoveOrphan`; report [`count_unmanaged`] as
//!   `status.unmanagedCredentials`.

mod rotation;
mod secret;

#[cfg(test)]
mod simulation;

pub use rotation::{
    AddedPassword, CredentialAction, CredentialError, CredentialPlan, CredentialReason,
    MARKER_PREFIX, ManagedMarker, ObservedPassword, REPLICATION_GRACE, REPLICATION_POLL,
    RotationInput, count_unmanaged, managed_display_name, new_nonce, parse_managed_display_name,
    plan_password_rotation, previous_revoke_at, undeclared_managed_credentials,
};
pub use secret::{
    HINT_LEN, KEY_AUTHORITY_HOST, KEY_CLIENT_ID, KEY_CLIENT_SECRET, KEY_EXPIRES_AT, KEY_KEY_ID,
    KEY_TENANT_ID, KEY_TOKEN_ENDPOINT, LABEL_APP_REGISTRATION, LABEL_MANAGED_BY, MANAGED_BY,
    ObservedSecret, SecretContext, SecretCredential, hint_of, render_secret, secret_labels,
    secret_string_data, token_endpoint,
};
