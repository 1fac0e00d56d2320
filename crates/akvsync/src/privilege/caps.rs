//! The process's Linux capabilities (issue 16): at start a service running as its own account
//! keeps exactly the capabilities its settings need ([`super::plan`]) and drops the rest,
//! clears its ambient and inheritable sets so that hooks start with none, and sets
//! `no_new_privs`; a capability the settings need but the process lacks is named with the
//! command that grants it. Root processes (the extension handler, an administrator's `once`)
//! are left alone: their bound is the unit's `CapabilityBoundingSet`.

use std::io;

use nix::unistd::{Gid, Group, Uid, User, getgroups};

use super::{Account, Capability, Plan, Resolve};
use crate::settings::Settings;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The three capability sets of this process, one bit per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn join(data: &[Data; 2], pick: fn(&Data) -> u32) -> u64 {
    u64::from(pick(&data[0])) | (u64::from(pick(&data[1])) << 32)
}

/// This process's capability sets (`capget`).
pub fn current() -> io::Result<Sets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header writes exactly two `Data` structs.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Sets {
        effective: join(&data, |d| d.effective),
        permitted: join(&data, |d| d.permitted),
        inheritable: join(&data, |d| d.inheritable),
    })
}

fn set(sets: Sets) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |value: u64| [value as u32, (value >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        Data {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads exactly two `Data` structs for a version-3 header.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(option, arg, 0, 0, 0)`: one async-signal-safe system call.
fn prctl(option: nix::libc::c_int, arg: nix::libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        nix::libc::prctl(
            option,
            arg,
            0 as nix::libc::c_ulong,
            0 as nix::libc::c_ulong,
            0 as nix::libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears the ambient set: programs this process starts get no capability from it.
/// Async-signal-safe (one `prctl`), so hooks call it between fork and exec too.
pub fn clear_ambient() -> io::Result<()> {
    prctl(
        nix::libc::PR_CAP_AMBIENT,
        nix::libc::PR_CAP_AMBIENT_CLEAR_ALL as nix::libc::c_ulong,
    )
}

fn no_new_privs() -> io::Result<()> {
    prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// Owner and group names through NSS (as `id` resolves them).
#[derive(Debug)]
pub struct Nss;

impl Resolve for Nss {
    fn uid(&self, name: &str) -> Option<u32> {
        User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
    }
    fn gid(&self, name: &str) -> Option<u32> {
        Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
}

/// This process as an [`Account`] (effective uid, effective and supplementary groups).
pub fn this_account() -> Account {
    let uid = Uid::effective();
    let mut gids: Vec<u32> = getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    gids.push(Gid::effective().as_raw());
    gids.sort_unstable();
    gids.dedup();
    let name = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.as_raw().to_string(), |u| u.name);
    Account {
        name,
        uid: uid.as_raw(),
        gids,
    }
}

/// What [`narrow`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// Capabilities kept (needed and held).
    pub kept: Vec<Capability>,
    /// Capabilities the settings need that the process does not hold, with the setting.
    pub missing: Vec<(Capability, String)>,
    /// How many capabilities were dropped.
    pub dropped: u32,
}

/// For a process not running as root: keeps only the capabilities `plan` needs, clears the
/// ambient and inheritable sets, sets `no_new_privs`. `None` for root (left alone).
pub fn narrow(plan: &Plan) -> io::Result<Option<Narrowed>> {
    if Uid::effective().is_root() {
        return Ok(None);
    }
    let sets = current()?;
    let wanted: u64 = plan
        .capabilities
        .iter()
        .fold(0, |bits, (c, _)| bits | (1u64 << c.bit()));
    let keep = sets.permitted & wanted;
    set(Sets {
        effective: keep,
        permitted: keep,
        inheritable: 0,
    })?;
    clear_ambient()?;
    no_new_privs()?;
    let kept = plan
        .capabilities
        .iter()
        .filter(|(c, _)| keep & (1 << c.bit()) != 0)
        .map(|(c, _)| *c)
        .collect();
    let missing = plan
        .capabilities
        .iter()
        .filter(|(c, _)| keep & (1 << c.bit()) == 0)
        .cloned()
        .collect();
    Ok(Some(Narrowed {
        kept,
        missing,
        dropped: (sets.permitted & !keep).count_ones(),
    }))
}

/// [`narrow`] for `settings`: logs what it kept and dropped; returns a warning per
/// capability the settings need and the process lacks.
pub fn narrow_for(settings: &Settings) -> Vec<String> {
    if Uid::effective().is_root() {
        // Left alone (see `narrow`); no account lookups either.
        return Vec::new();
    }
    let plan = super::plan(settings, &this_account(), &Nss);
    match narrow(&plan) {
        Ok(None) => Vec::new(),
        Ok(Some(narrowed)) => {
            let kept: Vec<&str> = narrowed.kept.iter().map(|c| c.name()).collect();
            tracing::info!(
                kept = %kept.join(","),
                dropped = narrowed.dropped,
                "capabilities narrowed to what the settings need"
            );
            narrowed
                .missing
                .iter()
                .map(|(capability, why)| {
                    format!(
                        "the settings need {} ({why}), which this process does not hold: run \
                         `akvsync service install` as root, then restart the service",
                        capability.name()
                    )
                })
                .collect()
        }
        Err(e) => vec![format!("cannot narrow the process's capabilities: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_bit_layout_joins_both_words() {
        let sets = current().unwrap();
        assert_eq!(sets.effective & !sets.permitted, 0, "effective ⊆ permitted");
        let data = [
            Data {
                effective: 1,
                permitted: 0,
                inheritable: 0,
            },
            Data {
                effective: 2,
                permitted: 0,
                inheritable: 0,
            },
        ];
        assert_eq!(join(&data, |d| d.effective), (2 << 32) | 1);
    }
}
