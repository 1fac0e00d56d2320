//! Exit codes shared by every verb and the extension handler (SPEC §10). A module of its own
//! below both `cli` and `handler`, so that neither reaches up into the other for them.

/// Success.
pub const OK: u8 = 0;
/// A certificate is not current, or another runtime failure.
pub const FAILURE: u8 = 1;
/// Invalid settings or usage.
pub const INVALID: u8 = 2;
/// Another process holds the state directory's lock.
pub const LOCKED: u8 = 3;
