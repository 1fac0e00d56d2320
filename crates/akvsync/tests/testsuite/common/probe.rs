//! Request counts since a moment of the test: [`RequestProbe`] keeps the emulator's
//! counters as they were when it was taken and answers with the differences.
//!
//! ```ignore
//! let probe = RequestProbe::new(&env.emu);
//! agent.sync();
//! assert_eq!(probe.object(VAULT, "web"), 1);
//! ```

use kvemu::{Counters, Emulator};

pub struct RequestProbe<'a> {
    emu: &'a Emulator,
    base: Counters,
}

impl<'a> RequestProbe<'a> {
    pub fn new(emu: &'a Emulator) -> Self {
        RequestProbe {
            emu,
            base: emu.counters(),
        }
    }

    /// Requests to the identity endpoint since the probe was taken.
    pub fn identity(&self) -> u64 {
        self.emu.counters().identity - self.base.identity
    }

    /// Requests for `vault` (any object).
    pub fn vault(&self, vault: &str) -> u64 {
        self.emu.counters().vault_requests(vault) - self.base.vault_requests(vault)
    }

    /// Requests for `vault`/`object`.
    pub fn object(&self, vault: &str, object: &str) -> u64 {
        self.emu.counters().object_requests(vault, object)
            - self.base.object_requests(vault, object)
    }

    /// Requests to the vault listener for a host that is not a vault.
    pub fn unknown_host(&self) -> u64 {
        self.emu.counters().unknown_host - self.base.unknown_host
    }
}
