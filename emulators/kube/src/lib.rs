//! Kubernetes API server emulator (issue 4).

pub mod cel_ext;
pub mod validation;
