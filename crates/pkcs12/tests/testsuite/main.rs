//! The PKCS#12 crate's integration tests, one binary (as cargo's own `testsuite`): each
//! module is one subject, all share the fixtures in [`common`]. Run one subject with
//! `cargo test -p akvsync-pkcs12 --test testsuite <module>::`.

mod common;

mod fixtures;
mod keyvault;
mod no_panic;
mod roundtrip;
