//! Conformance of the emulator (`kvemu`) with the official Azure SDK for Rust
//! (`azure_security_keyvault_secrets`). The test lives in `tests/`; this
//! member is outside the workspace's default members so that the agent's build
//! never pays for the SDK.
