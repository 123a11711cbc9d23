//! Client-secret rotation as a pure state machine, and the Secret that receives the value.
//!
//! The state of a rotation lives in the AppRegistration's status, so that a crash between any two
//! steps recovers without a lost value or an orphaned credential (docs/architecture.md, "Credentials
//! and rotation"). [`plan_password_rotation`] looks at the spec, the status entry, the app's
//! password credentials in Graph and the Secret, and returns the one next step; the driver
//! executes it, persists [`CredentialPlan::status`], observes again and calls again until
//! [`CredentialAction::Idle`].
//!
//! Order of concerns in each call:
//! 1. a pending rotation whose credential exists: complete it (the Secret holds it), write the
//!    Secret (the value is still in memory), or remove it (the value is lost);
//! 2. adopt a credential of ours that the Secret holds but status does not know;
//! 3. remove orphans (this resource's marker, this Secret, neither current, previous nor pending);
//! 4. forget previous credentials that vanished, or remove each once its own revoke time passed;
//! 5. a pending rotation with nothing carrying its nonce: `addPassword`;
//! 6. start a rotation when one is due (write-ahead: the pending record first);
//! 7. refresh status fields from Graph, or wait until the next renewal or revocation.
//!
//! [`drive_password`] is the one loop that executes it, behind ports ([`GraphPasswords`],
//! [`SecretStore`], [`StatusStore`], [`Events`], [`Clock`], [`Fence`]): the controller plugs in
//! Graph and the Kubernetes API, the crash simulation plugs in in-memory ports with crash, fault
//! and lag injection, so the simulation tests the production loop.

pub mod certgen;
mod certificate;
mod certificate_driver;
mod certificate_ports;
mod driver;
mod ports;
mod rotation;
mod secret;

#[cfg(test)]
mod certificate_simulation;
#[cfg(test)]
mod simulation;

pub use certificate::{
    CertificateAction, CertificateInput, CertificatePlan, CertificateReason,
    CertificateStatusError, HeldCertificate, KEY_REPLICATION_GRACE, ObservedCertificateSecret,
    ObservedKey, certificate_display_name, plan_certificate, plan_retired_certificate,
    undeclared_certificate_names,
};
pub use certificate_driver::{
    CertificateMaterial, CertificateOutcome, CertificatePorts, CertificateSecretState,
    CertificateSecrets, CertificateTarget, Generator, GraphKeys, ProofSigner, drive_certificate,
};
pub use certificate_ports::{
    GraphKeyPort, KEY_CLIENT_PEM, KEY_NEXT_CRT, KEY_NEXT_KEY, KEY_THUMBPRINT, KEY_TLS_CRT,
    KEY_TLS_KEY, KubeCertificateSecretPort, RsaGenerator, observed_keys,
};
pub use driver::{
    Clock, CredentialEvent, DriverError, Events, Fence, Fenced, GraphPasswords, MAX_CONFLICTS,
    MAX_STEPS, PassOutcome, PasswordTarget, PortError, Ports, SecretStore, StatusStore,
    SystemClock, drive_password,
};
pub use ports::{
    GraphPasswordPort, KUBE_CALL_TIMEOUT, KubeSecretPort, KubeTimeout, StatusHandle,
    StatusWriteError, bounded, observed_passwords,
};
pub use rotation::{
    AddedPassword, CredentialAction, CredentialError, CredentialPlan, CredentialReason,
    MARKER_PREFIX, ManagedMarker, ObservedPassword, REPLICATION_GRACE, REPLICATION_POLL,
    RotationInput, count_unmanaged, managed_display_name, new_nonce, parse_managed_display_name,
    plan_password_rotation, plan_retired_password, previous_revoke_at, undeclared_secret_names,
};
pub use secret::{
    HINT_LEN, KEY_AUTHORITY_HOST, KEY_CLIENT_ID, KEY_CLIENT_SECRET, KEY_EXPIRES_AT, KEY_KEY_ID,
    KEY_TENANT_ID, KEY_TOKEN_ENDPOINT, LABEL_APP_REGISTRATION, ObservedSecret, SecretConflict,
    SecretContext, SecretCredential, foreign_owner, hint_of, render_secret, secret_labels,
    secret_string_data, token_endpoint,
};
