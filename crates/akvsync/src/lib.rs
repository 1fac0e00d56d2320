//! akvsync keeps Azure Key Vault certificates installed and current on a machine: a
//! drop-in, open re-implementation of the Azure Key Vault VM extension.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of modules.

pub mod cli;
pub mod settings;
pub mod store;
