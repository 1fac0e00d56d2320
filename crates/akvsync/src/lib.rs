//! akvsync keeps Azure Key Vault certificates installed and current on a machine: a
//! drop-in, open re-implementation of the Azure Key Vault VM extension.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of modules.

pub mod backoff;
pub mod chain;
pub mod cli;
pub mod decode;
pub mod eventlog;
pub mod exit;
pub mod fnv;
pub mod handler;
pub mod health;
pub mod hooks;
pub mod http;
pub mod identity;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod outputs;
pub mod privilege;
pub mod safefs;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;
pub mod sync;
pub mod vault;
pub mod winservice;
pub mod wipe;
