//! Certificate stores: where installed certificates live. The Linux directory store is
//! the first implementation; the Windows certificate store follows (issue 6) behind the
//! same interface that the sync engine will use.

#[cfg(unix)]
pub mod linux;
