//! What Argo CD and Flux show for our resources, computed by their own logic: the Argo CD health
//! script (`deploy/argocd/health.lua`) in a Lua interpreter and the kstatus rules ported from
//! cli-utils, applied to statuses captured from the e2e scenarios; checked against the README.

#[path = "../support/mod.rs"]
mod support;

mod argocd;
mod e2e;
mod fixtures;
mod kstatus;
mod snippets;
