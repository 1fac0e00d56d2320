//! Faults injected into the emulator for the length of a scope: [`FaultScope`] clears the
//! emulator's faults when it is dropped (or [`FaultScope::clear`]ed), so no fault outlives
//! the step of the test that wanted it, even when an assertion fails inside it.
//!
//! ```ignore
//! let outage = FaultScope::new(&env.emu).inject(always(Fault::object(VAULT, "web", status(503, None), 1)));
//! // … the agent sees 503 …
//! outage.clear();
//! ```

use kvemu::{Emulator, Fault, FaultKind};

#[must_use = "the faults are cleared when the scope is dropped"]
pub struct FaultScope<'a> {
    emu: &'a Emulator,
}

impl<'a> FaultScope<'a> {
    pub fn new(emu: &'a Emulator) -> Self {
        FaultScope { emu }
    }

    /// Adds `fault` (after the ones already injected: the first that matches wins).
    pub fn inject(self, fault: Fault) -> Self {
        self.emu.inject(fault);
        self
    }

    /// Ends the scope: the emulator answers normally again.
    pub fn clear(self) {}
}

impl Drop for FaultScope<'_> {
    fn drop(&mut self) {
        self.emu.clear_faults();
    }
}

/// `fault` on every matching request until cleared (not only the next N).
pub fn always(fault: Fault) -> Fault {
    fault.with_probability(1.0)
}

/// An HTTP status answer, with `Retry-After` seconds when given.
pub fn status(status: u16, retry_after: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after,
    }
}
