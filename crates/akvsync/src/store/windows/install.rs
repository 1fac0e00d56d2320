//! Install, read back and prune on a Windows system store (`cfg(windows)`), in the order
//! SPEC §5.1 gives: resolve accounts (refuse before anything changes) → build the PFX in
//! memory → import into a temporary memory store → classify leaf/intermediates/roots →
//! private-key DACL → add the leaf (friendly name, akvsync's owner mark) → intermediates to
//! `CA` → `linkOnRenewal` → commit; then the renewal's reach ([`Reach`]): the lifecycle
//! notification and HTTP.sys binding moves (issue 15). Pruning keeps a version an HTTP.sys
//! binding still uses, and deletes the private keys of what it prunes when no remaining
//! certificate references them.

use std::time::{SystemTime, UNIX_EPOCH};

use windows_sys::Win32::Security::Cryptography::{
    CERT_RENEWAL_PROP_ID, CERT_STORE_ADD_REPLACE_EXISTING, CERT_STORE_ADD_USE_EXISTING,
};
use zeroize::Zeroizing;

use super::plan::{self, Account, Found};
use super::sys::{self, Cert, Store, Win32Error};
use super::{Options, owner, store_path};
use crate::decode::{Bundle, CertificateInfo};
use crate::settings::{ObservedCertificate, WindowsTarget};
use crate::store::InstalledCertificate;

/// Why a Windows install, read-back or prune failed.
#[derive(Debug, thiserror::Error)]
pub enum WindowsStoreError {
    #[error("{0}")]
    Win32(#[from] Win32Error),
    #[error("accounts: {account:?} does not resolve to a Windows account: {source}")]
    Account { account: String, source: Win32Error },
    #[error("cannot build the PFX to import: {0}")]
    Pfx(String),
    #[error("the imported PFX lacks the leaf certificate")]
    NoLeaf,
    #[error("the imported leaf certificate {0} has no private key")]
    NoKey(String),
    #[error("{0}")]
    Decode(String),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// akvsync's mark in the certificate's description property: `akvsync <vault host>/<secret>
/// <install time in ms>`. It tells what akvsync installed (pruning touches nothing without
/// it) and shows admins where a certificate came from.
fn mark_text(owner: &str, at_ms: u64) -> String {
    format!("akvsync {owner} {at_ms}")
}

fn mark_of(cert: &Cert) -> Option<(String, u64)> {
    let text = cert.description();
    let (who, when) = text.strip_prefix("akvsync ")?.rsplit_once(' ')?;
    Some((who.to_owned(), when.parse().ok()?))
}

/// Resolves `accounts` to SID strings; the first that does not resolve is the error.
pub fn resolve_accounts(accounts: &[String]) -> Result<Vec<String>, WindowsStoreError> {
    accounts
        .iter()
        .map(|account| {
            let resolved = match plan::classify_account(account) {
                Account::WellKnown(w) => sys::well_known_sid(w),
                Account::SidString(s) => sys::parse_sid_string(s),
                Account::Name(n) => sys::lookup_account(n),
            };
            resolved.map_err(|source| WindowsStoreError::Account {
                account: account.clone(),
                source,
            })
        })
        .collect()
}

/// The PFX imported for a bundle: Key Vault's form with the bundle's CAPI1 CSP name when it
/// has one, OpenSSL's modern form (no CSP name: CNG) otherwise. PEM and PFX secrets both go
/// through this, so there is one import path.
pub fn pfx_for(bundle: &Bundle) -> Result<Zeroizing<Vec<u8>>, WindowsStoreError> {
    let chain: Vec<&[u8]> = std::iter::once(&bundle.leaf)
        .chain(&bundle.chain)
        .map(|c| c.der.as_slice())
        .collect();
    let opts = match plan::provider_for(bundle.csp_name.as_deref()) {
        // The empty password as `00 00` (OpenSSL's form), which every PKCS#12 reader
        // accepts with an empty password; Key Vault's zero-length form is not (Wine's
        // gnutls-based import refuses it).
        plan::Provider::Capi => akvsync_pkcs12::EncodeOptions {
            csp_name: bundle.csp_name.clone(),
            empty_password: akvsync_pkcs12::EmptyPassword::BmpTerminator,
            ..akvsync_pkcs12::EncodeOptions::key_vault()
        },
        plan::Provider::Cng => akvsync_pkcs12::EncodeOptions::openssl_modern(),
    };
    akvsync_pkcs12::encode(&chain, bundle.key.pkcs8_der(), &opts)
        .map(Zeroizing::new)
        .map_err(|e| WindowsStoreError::Pfx(e.to_string()))
}

fn found(cert: &Cert) -> Option<(Found, CertificateInfo)> {
    let info = CertificateInfo::parse(&cert.der()).ok()?;
    let mark = mark_of(cert);
    Some((
        Found {
            thumbprint: info.thumbprint.clone(),
            friendly_name: cert.friendly_name(),
            dns_names: info.dns_names.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            installed_at: mark.map(|(_, at)| at),
        },
        info,
    ))
}

/// What a new version did beyond its own store entry (issue 15): the older certificates it
/// replaces (a DNS name in common, same store: `linkOnRenewal`'s rule), the lifecycle
/// notifications raised for them, the HTTP.sys bindings moved to it, and what failed there
/// (the certificate is installed either way; each problem is logged as a warning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    pub replaced: Vec<String>,
    pub notified: Vec<String>,
    pub moved: Vec<String>,
    pub problems: Vec<String>,
}

/// Installs `bundle` as `version` of `certificate` into `target`.
pub fn install(
    target: &WindowsTarget,
    certificate: &ObservedCertificate,
    version: &str,
    bundle: &Bundle,
    options: Options,
) -> Result<Reach, WindowsStoreError> {
    // Everything that can be refused is refused before the store changes.
    let readers = resolve_accounts(&target.accounts)?;
    let sddl = plan::key_dacl_sddl(&readers);
    let pfx = pfx_for(bundle)?;
    let provider = plan::provider_for(bundle.csp_name.as_deref());
    let flags = plan::import_flags(
        target.store_location,
        target.key_exportable,
        provider,
        options.import_compat,
    );
    let imported = Store::import_pfx(&pfx, flags)?;
    drop(pfx);

    // Classify: leaf = the decoded leaf, which must carry the key association
    // (`CERT_KEY_PROV_INFO_PROP_ID`); self-issued = root (never installed); the rest are
    // intermediates. The leaf is found by thumbprint rather than by the property alone:
    // Wine sets the key property on every certificate of the PFX.
    let mut leaf = None;
    let mut intermediates = Vec::new();
    for cert in imported.certificates() {
        let info = CertificateInfo::parse(&cert.der())
            .map_err(|e| WindowsStoreError::Decode(e.to_string()))?;
        if info.thumbprint == bundle.leaf.thumbprint {
            leaf = Some((cert, info));
        } else if !info.is_self_issued() {
            intermediates.push(cert);
        }
    }
    let (leaf, leaf_info) = leaf.ok_or(WindowsStoreError::NoLeaf)?;
    if !leaf.has_key_info() {
        return Err(WindowsStoreError::NoKey(leaf_info.thumbprint));
    }

    let store = Store::open_system(target.store_location, &target.store_name, true)?;
    let added = store.add(&leaf, CERT_STORE_ADD_REPLACE_EXISTING)?;
    let marked = (|| {
        added.set_friendly_name(&plan::friendly_name(
            &certificate.secret.secret_name,
            version,
        ))?;
        added.set_description(&mark_text(&owner(certificate), now_ms()))
    })();
    if let Err(e) = marked {
        // Never leave a certificate without its name or mark behind.
        let _ = sys::duplicate(&added).delete();
        let _ = store.commit();
        return Err(e.into());
    }
    store.commit()?;
    let intermediate_count = intermediates.len();
    if !intermediates.is_empty() {
        let ca = Store::open_system(target.store_location, "CA", true)?;
        for cert in &intermediates {
            ca.add(cert, CERT_STORE_ADD_USE_EXISTING)?;
        }
        ca.commit()?;
    }

    // The key ACL is set through a fresh handle on the stored certificate, after the
    // import's own provider handle is released (Wine writes a new key container to its
    // registry only then; on Windows the order is immaterial). If it fails, the
    // certificate is removed again: never a certificate whose key has the default ACL.
    drop((added, leaf, intermediates, imported, store));
    let store = Store::open_system(target.store_location, &target.store_name, false)?;
    let stored = store
        .certificates()
        .into_iter()
        .find(|c| found(c).is_some_and(|(f, _)| f.thumbprint == leaf_info.thumbprint))
        .ok_or(WindowsStoreError::NoLeaf)?;
    if let Err(e) = apply_key_dacl(&stored, &sddl) {
        let _ = stored.delete();
        let _ = store.commit();
        return Err(e.into());
    }
    let replaced = replaced_by(&store, &stored);
    if options.link_on_renewal {
        link_on_renewal(&store, &stored, &replaced)?;
    }
    store.commit()?;
    tracing::info!(
        store = %store_path(target),
        thumbprint = %leaf_info.thumbprint,
        version,
        intermediates = intermediate_count,
        "installed into the Windows certificate store"
    );
    drop(store);
    Ok(reach(target, &leaf_info.thumbprint, replaced, options))
}

/// The lifecycle notification and the HTTP.sys binding moves for a new certificate that
/// replaces `replaced` (thumbprints) in `target`'s store.
fn reach(target: &WindowsTarget, new: &str, replaced: Vec<String>, options: Options) -> Reach {
    let mut reach = Reach {
        replaced,
        ..Reach::default()
    };
    if reach.replaced.is_empty() {
        return reach;
    }
    if options.lifecycle_notifications {
        for old in &reach.replaced {
            match super::lifecycle::notify_replace(
                target.store_location,
                &target.store_name,
                old,
                new,
            ) {
                Ok(()) => reach.notified.push(old.clone()),
                Err(e) => reach
                    .problems
                    .push(format!("lifecycle notification {old} -> {new}: {e}")),
            }
        }
        if !reach.notified.is_empty() {
            tracing::info!(new, old = ?reach.notified, "certificate lifecycle notification (replace) raised");
        }
    }
    if options.update_http_sys_bindings {
        match super::httpsys::bindings() {
            Ok(bindings) => {
                let replaced: Vec<&str> = reach.replaced.iter().map(String::as_str).collect();
                for (old, moved) in
                    plan::bindings_to_move(&bindings, &replaced, &target.store_name, new)
                {
                    match super::httpsys::replace(&old, &moved) {
                        Ok(()) => {
                            tracing::info!(binding = %old.key, old = %old.thumbprint, new, "HTTP.sys binding moved");
                            reach.moved.push(old.key.to_string());
                        }
                        Err(e) => reach
                            .problems
                            .push(format!("HTTP.sys binding {}: {e}", old.key)),
                    }
                }
            }
            Err(e) => reach
                .problems
                .push(format!("reading the HTTP.sys bindings: {e}")),
        }
    }
    for problem in &reach.problems {
        tracing::warn!(event_id = crate::eventlog::ids::RENEWAL_REACH, "{problem}");
    }
    reach
}

/// Read-modify-write of the key's DACL: written only when its access-allowed entries differ
/// from `sddl`'s (a key re-imported for the same accounts keeps its descriptor untouched).
/// Under Wine this matters: every key shares one CAPI container whose registry key's DACL
/// Wine enforces within a wineserver session, so a second, different DACL cannot be written
/// there (NTE_BAD_KEYSET); see docs/windows.md.
fn apply_key_dacl(cert: &Cert, sddl: &str) -> Result<(), Win32Error> {
    if let Ok(current) = cert.key_dacl()
        && plan::parse_dacl_aces(&current) == plan::parse_dacl_aces(sddl)
    {
        return Ok(());
    }
    cert.set_key_dacl(sddl)
}

/// The thumbprints of the older certificates in `store` that `new` replaces: a DNS name in
/// common, issued earlier ([`plan::renewal_targets`]).
fn replaced_by(store: &Store, new: &Cert) -> Vec<String> {
    let Some((new_found, _)) = found(new) else {
        return Vec::new();
    };
    let list: Vec<Found> = store
        .certificates()
        .iter()
        .filter_map(|c| found(c).map(|(f, _)| f))
        .collect();
    plan::renewal_targets(&new_found, &list)
        .into_iter()
        .map(|i| list[i].thumbprint.clone())
        .collect()
}

/// Sets `CERT_RENEWAL_PROP_ID` (the new certificate's SHA-1) on each certificate in `store`
/// that it replaces.
fn link_on_renewal(
    store: &Store,
    new: &Cert,
    replaced: &[String],
) -> Result<(), WindowsStoreError> {
    if replaced.is_empty() {
        return Ok(());
    }
    let hash = <sha1::Sha1 as sha1::Digest>::digest(new.der());
    for cert in store.certificates() {
        if let Some((f, _)) = found(&cert)
            && replaced
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&f.thumbprint))
        {
            cert.set_property(CERT_RENEWAL_PROP_ID, &hash)?;
        }
    }
    tracing::info!(old = ?replaced, "linkOnRenewal: renewal property set");
    Ok(())
}

/// Every certificate in `target`'s store with what the store says about it (tests, status).
pub fn installed_in(
    target: &WindowsTarget,
) -> Result<Vec<InstalledCertificate>, WindowsStoreError> {
    let store = match Store::open_system(target.store_location, &target.store_name, false) {
        Ok(store) => store,
        Err(_) => return Ok(Vec::new()),
    };
    Ok(store
        .certificates()
        .into_iter()
        .filter_map(|c| {
            let (f, info) = found(&c)?;
            Some(InstalledCertificate {
                version: Some(f.friendly_name),
                leaf: info,
                has_private_key: c.has_private_key(),
                location: format!("{}\\{}", store_path(target), f.thumbprint),
            })
        })
        .collect())
}

/// The private key DACL (SDDL) of the certificate `thumbprint` in `target`'s store.
pub fn key_dacl_of(target: &WindowsTarget, thumbprint: &str) -> Result<String, WindowsStoreError> {
    let store = Store::open_system(target.store_location, &target.store_name, false)?;
    for cert in store.certificates() {
        if let Some((f, _)) = found(&cert)
            && f.thumbprint.eq_ignore_ascii_case(thumbprint)
        {
            return Ok(cert.key_dacl()?);
        }
    }
    Err(WindowsStoreError::Decode(format!(
        "{thumbprint} is not in {}",
        store_path(target)
    )))
}

/// The certificates akvsync installed for `certificate` (owner mark and friendly name).
fn ours(store: &Store, certificate: &ObservedCertificate) -> Vec<(Cert, Found, CertificateInfo)> {
    let me = owner(certificate);
    store
        .certificates()
        .into_iter()
        .filter(|c| mark_of(c).is_some_and(|(who, _)| who == me))
        .filter_map(|c| {
            let (f, info) = found(&c)?;
            Some((c, f, info))
        })
        .collect()
}

/// The current version and what is installed for it, read back from the store.
pub fn current(
    target: &WindowsTarget,
    certificate: &ObservedCertificate,
) -> Result<Option<(String, InstalledCertificate)>, WindowsStoreError> {
    let store = match Store::open_system(target.store_location, &target.store_name, false) {
        Ok(store) => store,
        Err(_) => return Ok(None),
    };
    let mine = ours(&store, certificate);
    let list: Vec<Found> = mine.iter().map(|(_, f, _)| f.clone()).collect();
    let Some((i, version)) = plan::current(&list, &certificate.secret.secret_name) else {
        return Ok(None);
    };
    let (cert, f, info) = &mine[i];
    Ok(Some((
        version.to_owned(),
        InstalledCertificate {
            version: Some(version.to_owned()),
            leaf: info.clone(),
            has_private_key: cert.has_private_key(),
            location: format!("{}\\{}", store_path(target), f.thumbprint),
        },
    )))
}

/// Deletes the versions in `owned` but not in `keep` that akvsync installed for
/// `certificate`; returns the versions no longer in the store.
pub fn prune(
    target: &WindowsTarget,
    certificate: &ObservedCertificate,
    owned: &[String],
    keep: &[&str],
) -> Result<Vec<String>, WindowsStoreError> {
    if owned.iter().all(|v| keep.contains(&v.as_str())) {
        // Nothing past the retention: no store scan, no HTTP.sys query.
        return Ok(Vec::new());
    }
    let store = match Store::open_system(target.store_location, &target.store_name, false) {
        Ok(store) => store,
        Err(_) => return Ok(Vec::new()),
    };
    let secret = &certificate.secret.secret_name;
    let mut removed = Vec::new();
    let mut deleted_any = false;
    let mut pruned_keys = Vec::new();
    let mine = ours(&store, certificate);
    // A certificate an HTTP.sys binding still serves stays until no binding uses it.
    let candidates: Vec<&str> = mine.iter().map(|(_, f, _)| f.thumbprint.as_str()).collect();
    let bound: Vec<String> = match super::httpsys::bindings() {
        Ok(bindings) => plan::still_bound(&candidates, &bindings, &target.store_name)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "HTTP.sys bindings not readable; pruning without them");
            Vec::new()
        }
    };
    'versions: for version in owned.iter().filter(|v| !keep.contains(&v.as_str())) {
        let of_version: Vec<&(Cert, Found, CertificateInfo)> = mine
            .iter()
            .filter(|(_, f, _)| {
                plan::version_in_friendly_name(&f.friendly_name, secret) == Some(version.as_str())
            })
            .collect();
        for (_, f, _) in &of_version {
            if bound.iter().any(|t| t.eq_ignore_ascii_case(&f.thumbprint)) {
                tracing::info!(version, thumbprint = %f.thumbprint, "kept: an HTTP.sys binding still uses it");
                continue 'versions;
            }
        }
        for (cert, _, _) in of_version {
            if let Some(info) = cert.key_prov_info() {
                pruned_keys.push(info.key_ref());
            }
            // Deleting consumes a reference; take a fresh one for it.
            sys::duplicate(cert).delete()?;
            deleted_any = true;
        }
        removed.push(version.clone());
    }
    if deleted_any {
        store.commit()?;
    }
    drop(mine);
    drop(store);
    delete_unused_keys(target, &pruned_keys);
    Ok(removed)
}

/// Deletes the private keys of pruned certificates that no certificate left in any store of
/// the location references ([`plan::keys_to_delete`]); a failure is logged, never fatal (the
/// certificates are gone either way).
fn delete_unused_keys(target: &WindowsTarget, pruned: &[plan::KeyRef]) {
    if pruned.is_empty() {
        return;
    }
    let stores = match sys::system_store_names(target.store_location) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "keys of pruned certificates kept: the stores cannot be listed");
            return;
        }
    };
    let mut remaining = Vec::new();
    for name in stores {
        if let Ok(store) = Store::open_system(target.store_location, &name, false) {
            remaining.extend(
                store
                    .certificates()
                    .iter()
                    .filter_map(|c| c.key_prov_info().map(|i| i.key_ref())),
            );
        }
    }
    for key in plan::keys_to_delete(pruned, &remaining) {
        match sys::delete_key(&key) {
            Ok(()) => {
                tracing::info!(container = %key.container, provider = %key.provider, "private key of a pruned certificate deleted")
            }
            Err(e) => {
                tracing::warn!(error = %e, container = %key.container, "private key of a pruned certificate not deleted")
            }
        }
    }
}
