//! The emulator's integration tests, one binary (as cargo's own `testsuite`): each module is
//! one subject, all share the harness in [`common`]. Run one subject with
//! `cargo test -p kvemu --test testsuite <module>::`.

mod common;

mod certificates;
mod faults;
mod identity;
mod perf;
mod recorded;
mod serve;
mod vault_api;
