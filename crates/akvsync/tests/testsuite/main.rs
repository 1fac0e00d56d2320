//! akvsync's integration tests, one binary (as cargo's own `testsuite`): each module is
//! one subject, all share the harness in [`common`]. One binary links once and runs every
//! test in one pool, where a binary per file linked the crate 26 times and ran the files one
//! after another. Run one subject with `cargo test -p akvsync --test testsuite <module>::`;
//! the Windows modules compile only for Windows (`--target x86_64-pc-windows-gnu` under Wine).

mod common;

mod agent_sync;
mod chain_validation;
mod cli_validate;
mod crash_consistency;
mod decode;
mod fault_matrix;
mod handler;
mod handler_packaging;
mod handler_status;
mod health;
mod hostile_local;
mod least_privilege;
mod linux_store;
mod metrics;
mod module_layers;
mod outputs;
mod path_safety;
mod secret_hygiene;
mod settings_corpus;
mod settings_cost;
mod settings_props;
mod windows_e2e;
mod windows_private_dir;
mod windows_real;
mod windows_store;
mod write_paths;
