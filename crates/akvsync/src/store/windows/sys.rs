//! The Win32 side of the Windows store (`cfg(windows)`): RAII owners for every crypt32,
//! advapi32 and ncrypt handle, and the few calls the store needs (system store open, PFX
//! import, enumerate, add, properties, commit, private-key security descriptors, account
//! resolution). Decisions live in `plan`; this module only performs them.

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Foundation::{GetLastError, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, ConvertStringSidToSidW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::Cryptography::{
    CERT_CONTEXT, CERT_DESCRIPTION_PROP_ID, CERT_FRIENDLY_NAME_PROP_ID, CERT_KEY_PROV_INFO_PROP_ID,
    CERT_NCRYPT_KEY_SPEC, CERT_STORE_CTRL_COMMIT, CERT_STORE_CTRL_COMMIT_FORCE_FLAG,
    CERT_STORE_OPEN_EXISTING_FLAG, CERT_STORE_PROV_SYSTEM_W, CERT_SYSTEM_STORE_CURRENT_USER,
    CERT_SYSTEM_STORE_LOCAL_MACHINE, CRYPT_ACQUIRE_ALLOW_NCRYPT_KEY_FLAG,
    CRYPT_ACQUIRE_SILENT_FLAG, CRYPT_INTEGER_BLOB, CertAddCertificateContextToStore,
    CertCloseStore, CertControlStore, CertDeleteCertificateFromStore,
    CertDuplicateCertificateContext, CertEnumCertificatesInStore, CertFreeCertificateContext,
    CertGetCertificateContextProperty, CertOpenStore, CertSetCertificateContextProperty,
    CryptAcquireCertificatePrivateKey, CryptGetProvParam, CryptReleaseContext, CryptSetProvParam,
    HCERTSTORE, NCRYPT_SECURITY_DESCR_PROPERTY, NCryptFreeObject, NCryptGetProperty,
    NCryptSetProperty, PFXImportCertStore, PP_KEYSET_SEC_DESCR,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, DACL_SECURITY_INFORMATION, LookupAccountNameW, PSECURITY_DESCRIPTOR,
    SECURITY_MAX_SID_SIZE, SID_NAME_USE, WELL_KNOWN_SID_TYPE, WinBuiltinAdministratorsSid,
    WinLocalServiceSid, WinLocalSystemSid, WinNetworkServiceSid,
};

use super::plan::WellKnown;
use crate::settings::StoreLocation;

/// A Win32 failure: what was attempted and the thread's last error code.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed (Windows error {code:#x})")]
pub struct Win32Error {
    pub what: String,
    pub code: u32,
}

fn last_error(what: impl Into<String>) -> Win32Error {
    // SAFETY: GetLastError only reads the calling thread's last-error value.
    let code = unsafe { GetLastError() };
    Win32Error {
        what: what.into(),
        code,
    }
}

fn hresult_error(what: impl Into<String>, hr: i32) -> Win32Error {
    Win32Error {
        what: what.into(),
        code: hr as u32,
    }
}

/// NUL-terminated UTF-16.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn from_wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0usize;
    // SAFETY: `p` is a NUL-terminated UTF-16 string returned by Windows (checked non-null);
    // we read up to and not past its terminator.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

/// Memory Windows allocated with `LocalAlloc` for us; freed with `LocalFree`.
struct LocalBox(*mut c_void);

impl Drop for LocalBox {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to allocate with LocalAlloc
            // and is freed exactly once, here.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// An open certificate store; closed on drop.
#[derive(Debug)]
pub struct Store(HCERTSTORE);

// SAFETY: certificate store handles are usable from any thread (crypt32 serialises access
// to a store internally); the handle is owned by this value alone.
unsafe impl Send for Store {}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is a valid open store owned by this value; closed once.
        unsafe { CertCloseStore(self.0, 0) };
    }
}

/// A certificate context (one reference); freed on drop.
#[derive(Debug)]
pub struct Cert(*const CERT_CONTEXT);

// SAFETY: certificate contexts are reference-counted and thread-safe in crypt32; this value
// owns exactly one reference.
unsafe impl Send for Cert {}

impl Drop for Cert {
    fn drop(&mut self) {
        // SAFETY: we own one reference to a valid context; released once.
        unsafe { CertFreeCertificateContext(self.0) };
    }
}

fn location_flag(location: StoreLocation) -> u32 {
    match location {
        StoreLocation::LocalMachine => CERT_SYSTEM_STORE_LOCAL_MACHINE,
        StoreLocation::CurrentUser => CERT_SYSTEM_STORE_CURRENT_USER,
    }
}

impl Store {
    /// Opens (creating if `create`) the system store `name` of `location`.
    pub fn open_system(
        location: StoreLocation,
        name: &str,
        create: bool,
    ) -> Result<Store, Win32Error> {
        let name_w = wide(name);
        let mut flags = location_flag(location);
        if !create {
            flags |= CERT_STORE_OPEN_EXISTING_FLAG;
        }
        // SAFETY: the provider is a predefined constant, `name_w` is NUL-terminated and lives
        // across the call; a null return is handled.
        let handle = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W,
                0,
                0,
                flags,
                name_w.as_ptr().cast(),
            )
        };
        if handle.is_null() {
            return Err(last_error(format!(
                "opening the {}\\{name} store",
                location.name()
            )));
        }
        Ok(Store(handle))
    }

    /// `PFXImportCertStore` with the empty password, then the null password. The PFX
    /// bytes are never part of an error.
    pub fn import_pfx(pfx: &[u8], flags: u32) -> Result<Store, Win32Error> {
        let blob = CRYPT_INTEGER_BLOB {
            cbData: u32::try_from(pfx.len()).map_err(|_| Win32Error {
                what: "PFX too large".into(),
                code: 0,
            })?,
            pbData: pfx.as_ptr().cast_mut(),
        };
        let empty = wide("");
        let mut last = None;
        for password in [empty.as_ptr(), ptr::null()] {
            // SAFETY: `blob` points at `pfx`, alive for the call and only read by it; the
            // password is a NUL-terminated empty string or null, both documented inputs.
            let handle = unsafe { PFXImportCertStore(&blob, password, flags) };
            if !handle.is_null() {
                return Ok(Store(handle));
            }
            last = Some(last_error(format!("importing the PFX (flags {flags:#x})")));
        }
        Err(last.unwrap_or_else(|| last_error("importing the PFX")))
    }

    /// Every certificate in the store, each with its own reference.
    pub fn certificates(&self) -> Vec<Cert> {
        let mut out = Vec::new();
        let mut prev: *const CERT_CONTEXT = ptr::null();
        loop {
            // SAFETY: the store is open; `prev` is null or the context returned by the
            // previous call, whose reference this call consumes.
            let next = unsafe { CertEnumCertificatesInStore(self.0, prev) };
            if next.is_null() {
                break;
            }
            // SAFETY: `next` is a valid context; duplicating adds the reference we own.
            out.push(Cert(unsafe { CertDuplicateCertificateContext(next) }));
            prev = next;
        }
        out
    }

    /// Adds a copy of `cert` (with its properties, including the key association) with
    /// the given `CERT_STORE_ADD_*` disposition; returns the context in this store.
    pub fn add(&self, cert: &Cert, disposition: u32) -> Result<Cert, Win32Error> {
        let mut added: *mut CERT_CONTEXT = ptr::null_mut();
        // SAFETY: the store is open, `cert` is a valid context, `added` receives a new
        // reference that we own.
        let ok =
            unsafe { CertAddCertificateContextToStore(self.0, cert.0, disposition, &mut added) };
        if ok == 0 || added.is_null() {
            return Err(last_error("adding the certificate to the store"));
        }
        Ok(Cert(added))
    }

    /// `CertControlStore(CERT_STORE_CTRL_COMMIT, FORCE)`: persists changes now. Wine needs
    /// it for property changes and deletes, and FORCE because Wine does not count a
    /// property change as making the store dirty; harmless on Windows.
    pub fn commit(&self) -> Result<(), Win32Error> {
        // SAFETY: the store is open; COMMIT takes no parameter.
        let ok = unsafe {
            CertControlStore(
                self.0,
                CERT_STORE_CTRL_COMMIT_FORCE_FLAG,
                CERT_STORE_CTRL_COMMIT,
                ptr::null(),
            )
        };
        if ok == 0 {
            // Not every store provider supports COMMIT (memory stores do not).
            return Err(last_error("committing the store"));
        }
        Ok(())
    }
}

/// A certificate's key association, as `CERT_KEY_PROV_INFO_PROP_ID` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProvInfo {
    pub container: String,
    pub provider: String,
    pub provider_type: u32,
    pub flags: u32,
    pub key_spec: u32,
}

/// A private key acquired from a certificate: a CAPI provider or a CNG key.
struct PrivateKey {
    handle: usize,
    spec: u32,
    free: bool,
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        if !self.free {
            return;
        }
        if self.spec == CERT_NCRYPT_KEY_SPEC {
            // SAFETY: the handle is a CNG key we own (the caller-free flag was set).
            unsafe { NCryptFreeObject(self.handle) };
        } else {
            // SAFETY: the handle is a CAPI provider context we own.
            unsafe { CryptReleaseContext(self.handle, 0) };
        }
    }
}

/// Another reference to the same certificate context.
pub fn duplicate(cert: &Cert) -> Cert {
    // SAFETY: `cert` holds a valid context; duplicating adds a reference we own.
    Cert(unsafe { CertDuplicateCertificateContext(cert.0) })
}

impl Cert {
    /// The DER encoding.
    pub fn der(&self) -> Vec<u8> {
        // SAFETY: the context is valid; pbCertEncoded/cbCertEncoded describe its encoding,
        // alive as long as the context.
        unsafe {
            let c = &*self.0;
            std::slice::from_raw_parts(c.pbCertEncoded, c.cbCertEncoded as usize).to_vec()
        }
    }

    /// A property's bytes, or `None` when it is not set.
    pub fn property(&self, id: u32) -> Option<Vec<u8>> {
        let mut size = 0u32;
        // SAFETY: size query with a null buffer, as documented.
        let ok =
            unsafe { CertGetCertificateContextProperty(self.0, id, ptr::null_mut(), &mut size) };
        if ok == 0 {
            return None;
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` has `size` writable bytes.
        let ok = unsafe {
            CertGetCertificateContextProperty(self.0, id, buf.as_mut_ptr().cast(), &mut size)
        };
        if ok == 0 {
            return None;
        }
        buf.truncate(size as usize);
        Some(buf)
    }

    /// Sets a blob property (friendly name bytes, renewal hash, akvsync's mark).
    pub fn set_property(&self, id: u32, value: &[u8]) -> Result<(), Win32Error> {
        let blob = CRYPT_INTEGER_BLOB {
            cbData: value.len() as u32,
            pbData: value.as_ptr().cast_mut(),
        };
        // SAFETY: the context is valid; `blob` points at `value`, alive for the call and
        // copied by it.
        let ok = unsafe {
            CertSetCertificateContextProperty(
                self.0,
                id,
                0,
                (&blob as *const CRYPT_INTEGER_BLOB).cast(),
            )
        };
        if ok == 0 {
            return Err(last_error(format!("setting certificate property {id}")));
        }
        Ok(())
    }

    fn string_property(&self, id: u32) -> String {
        let Some(bytes) = self.property(id) else {
            return String::new();
        };
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16_lossy(&units)
    }

    fn set_string_property(&self, id: u32, value: &str) -> Result<(), Win32Error> {
        let bytes: Vec<u8> = wide(value).iter().flat_map(|u| u.to_le_bytes()).collect();
        self.set_property(id, &bytes)
    }

    /// The friendly name, empty when unset.
    pub fn friendly_name(&self) -> String {
        self.string_property(CERT_FRIENDLY_NAME_PROP_ID)
    }

    pub fn set_friendly_name(&self, name: &str) -> Result<(), Win32Error> {
        self.set_string_property(CERT_FRIENDLY_NAME_PROP_ID, name)
    }

    /// The description (`CERT_DESCRIPTION_PROP_ID`), empty when unset.
    pub fn description(&self) -> String {
        self.string_property(CERT_DESCRIPTION_PROP_ID)
    }

    pub fn set_description(&self, text: &str) -> Result<(), Win32Error> {
        self.set_string_property(CERT_DESCRIPTION_PROP_ID, text)
    }

    /// The key association (`CERT_KEY_PROV_INFO_PROP_ID`): container, provider, provider
    /// type, flags (`CRYPT_MACHINE_KEYSET` …) and key spec.
    pub fn key_prov_info(&self) -> Option<KeyProvInfo> {
        use windows_sys::Win32::Security::Cryptography::CRYPT_KEY_PROV_INFO;
        let bytes = self.property(CERT_KEY_PROV_INFO_PROP_ID)?;
        if bytes.len() < std::mem::size_of::<CRYPT_KEY_PROV_INFO>() {
            return None;
        }
        // SAFETY: crypt32 returns a CRYPT_KEY_PROV_INFO followed by the strings its
        // pointers reference, all inside `bytes`, which outlives these reads; the read is
        // unaligned-safe.
        unsafe {
            let info = ptr::read_unaligned(bytes.as_ptr().cast::<CRYPT_KEY_PROV_INFO>());
            Some(KeyProvInfo {
                container: from_wide_ptr(info.pwszContainerName),
                provider: from_wide_ptr(info.pwszProvName),
                provider_type: info.dwProvType,
                flags: info.dwFlags,
                key_spec: info.dwKeySpec,
            })
        }
    }

    /// Sets the key association (`CERT_KEY_PROV_INFO_PROP_ID`) to `info`.
    pub fn set_key_prov_info(&self, info: &KeyProvInfo) -> Result<(), Win32Error> {
        use windows_sys::Win32::Security::Cryptography::CRYPT_KEY_PROV_INFO;
        let mut container = wide(&info.container);
        let mut provider = wide(&info.provider);
        let raw = CRYPT_KEY_PROV_INFO {
            pwszContainerName: container.as_mut_ptr(),
            pwszProvName: if info.provider.is_empty() {
                ptr::null_mut()
            } else {
                provider.as_mut_ptr()
            },
            dwProvType: info.provider_type,
            dwFlags: info.flags,
            cProvParam: 0,
            rgProvParam: ptr::null_mut(),
            dwKeySpec: info.key_spec,
        };
        // SAFETY: the context is valid; crypt32 copies the structure and its strings, which
        // are alive for the call.
        let ok = unsafe {
            CertSetCertificateContextProperty(
                self.0,
                CERT_KEY_PROV_INFO_PROP_ID,
                0,
                ptr::from_ref(&raw).cast(),
            )
        };
        if ok == 0 {
            return Err(last_error("setting the key association"));
        }
        Ok(())
    }

    /// Whether the certificate has an associated private key (`CERT_KEY_PROV_INFO_PROP_ID`).
    pub fn has_key_info(&self) -> bool {
        self.property(CERT_KEY_PROV_INFO_PROP_ID).is_some()
    }

    /// Deletes the certificate from its store (the key container is left alone).
    pub fn delete(self) -> Result<(), Win32Error> {
        let context = self.0;
        std::mem::forget(self);
        // SAFETY: CertDeleteCertificateFromStore frees the context it is given (even on
        // failure); we hand it our reference and forgot our own drop above.
        let ok = unsafe { CertDeleteCertificateFromStore(context) };
        if ok == 0 {
            return Err(last_error("deleting the certificate"));
        }
        Ok(())
    }

    fn private_key(&self) -> Result<PrivateKey, Win32Error> {
        let mut handle = 0usize;
        let mut spec = 0u32;
        let mut free = 0;
        // SAFETY: the context is valid; out-pointers are valid locals; silent flag: no UI.
        let ok = unsafe {
            CryptAcquireCertificatePrivateKey(
                self.0,
                CRYPT_ACQUIRE_SILENT_FLAG | CRYPT_ACQUIRE_ALLOW_NCRYPT_KEY_FLAG,
                ptr::null(),
                &mut handle,
                &mut spec,
                &mut free,
            )
        };
        if ok == 0 {
            return Err(last_error("acquiring the certificate's private key"));
        }
        Ok(PrivateKey {
            handle,
            spec,
            free: free != 0,
        })
    }

    /// Whether the private key can be acquired.
    pub fn has_private_key(&self) -> bool {
        self.has_key_info() && self.private_key().is_ok()
    }

    /// Replaces the DACL of the private key's security descriptor with `sddl` (owner,
    /// group and SACL untouched: only `DACL_SECURITY_INFORMATION` is written), through
    /// CNG or CAPI as the key requires.
    pub fn set_key_dacl(&self, sddl: &str) -> Result<(), Win32Error> {
        let key = self.private_key()?;
        let sddl_w = wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        let mut sd_len = 0u32;
        // SAFETY: `sddl_w` is NUL-terminated; the descriptor is LocalAlloc'ed into `sd`,
        // owned by the LocalBox below.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl_w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                &mut sd_len,
            )
        };
        if ok == 0 {
            return Err(last_error("building the private key's security descriptor"));
        }
        let _owned = LocalBox(sd);
        if key.spec == CERT_NCRYPT_KEY_SPEC {
            // SAFETY: a valid CNG key handle; `sd` points at `sd_len` bytes of a
            // self-relative descriptor.
            let hr = unsafe {
                NCryptSetProperty(
                    key.handle,
                    NCRYPT_SECURITY_DESCR_PROPERTY,
                    sd.cast(),
                    sd_len,
                    DACL_SECURITY_INFORMATION,
                )
            };
            if hr != 0 {
                return Err(hresult_error(
                    "setting the CNG key's security descriptor",
                    hr,
                ));
            }
        } else {
            // SAFETY: a valid CAPI provider handle; PP_KEYSET_SEC_DESCR takes a
            // self-relative descriptor and the parts to set as flags.
            let ok = unsafe {
                CryptSetProvParam(
                    key.handle,
                    PP_KEYSET_SEC_DESCR,
                    sd.cast(),
                    DACL_SECURITY_INFORMATION,
                )
            };
            if ok == 0 {
                return Err(last_error(
                    "setting the CAPI key container's security descriptor",
                ));
            }
        }
        Ok(())
    }

    /// The private key's DACL as SDDL, read back from CNG or CAPI.
    pub fn key_dacl(&self) -> Result<String, Win32Error> {
        let key = self.private_key()?;
        let mut buf = vec![0u8; 4096];
        let mut len = buf.len() as u32;
        if key.spec == CERT_NCRYPT_KEY_SPEC {
            // SAFETY: a valid CNG key; `buf` has `len` writable bytes.
            let hr = unsafe {
                NCryptGetProperty(
                    key.handle,
                    NCRYPT_SECURITY_DESCR_PROPERTY,
                    buf.as_mut_ptr(),
                    len,
                    &mut len,
                    DACL_SECURITY_INFORMATION,
                )
            };
            if hr != 0 {
                return Err(hresult_error(
                    "reading the CNG key's security descriptor",
                    hr,
                ));
            }
        } else {
            // SAFETY: a valid CAPI provider; `buf` has `len` writable bytes.
            let ok = unsafe {
                CryptGetProvParam(
                    key.handle,
                    PP_KEYSET_SEC_DESCR,
                    buf.as_mut_ptr(),
                    &mut len,
                    DACL_SECURITY_INFORMATION,
                )
            };
            if ok == 0 {
                return Err(last_error(
                    "reading the CAPI key container's security descriptor",
                ));
            }
        }
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `buf` holds a self-relative descriptor written by the call above; the
        // string is LocalAlloc'ed into `text`, owned by the LocalBox below.
        let ok = unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                buf.as_mut_ptr().cast(),
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error(
                "converting the key's security descriptor to SDDL",
            ));
        }
        let _owned = LocalBox(text.cast());
        Ok(from_wide_ptr(text))
    }
}

fn sid_to_string(sid: *mut c_void) -> Result<String, Win32Error> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID; the string is LocalAlloc'ed into `text`, owned below.
    let ok = unsafe { ConvertSidToStringSidW(sid, &mut text) };
    if ok == 0 {
        return Err(last_error("converting a SID to a string"));
    }
    let _owned = LocalBox(text.cast());
    Ok(from_wide_ptr(text))
}

/// The SID string of a well-known account, built with `CreateWellKnownSid`.
pub fn well_known_sid(account: WellKnown) -> Result<String, Win32Error> {
    let kind: WELL_KNOWN_SID_TYPE = match account {
        WellKnown::NetworkService => WinNetworkServiceSid,
        WellKnown::LocalService => WinLocalServiceSid,
        WellKnown::LocalSystem => WinLocalSystemSid,
        WellKnown::Administrators => WinBuiltinAdministratorsSid,
    };
    let mut buf = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut size = buf.len() as u32;
    // SAFETY: `buf` has `size` writable bytes (the maximum SID size); no domain SID is
    // needed for these kinds.
    let ok =
        unsafe { CreateWellKnownSid(kind, ptr::null_mut(), buf.as_mut_ptr().cast(), &mut size) };
    if ok == 0 {
        return Err(last_error("building a well-known SID"));
    }
    sid_to_string(buf.as_mut_ptr().cast())
}

/// Validates and normalises a SID string.
pub fn parse_sid_string(text: &str) -> Result<String, Win32Error> {
    let text_w = wide(text);
    let mut sid: *mut c_void = ptr::null_mut();
    // SAFETY: `text_w` is NUL-terminated; the SID is LocalAlloc'ed into `sid`, owned below.
    let ok = unsafe { ConvertStringSidToSidW(text_w.as_ptr(), &mut sid) };
    if ok == 0 {
        return Err(last_error("parsing the SID string"));
    }
    let _owned = LocalBox(sid);
    sid_to_string(sid)
}

/// Resolves an account name with `LookupAccountNameW`.
pub fn lookup_account(name: &str) -> Result<String, Win32Error> {
    let name_w = wide(name);
    let mut sid = vec![0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut sid_len = sid.len() as u32;
    let mut domain = vec![0u16; 256];
    let mut domain_len = domain.len() as u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: every buffer has the length passed with it; `name_w` is NUL-terminated.
    let ok = unsafe {
        LookupAccountNameW(
            ptr::null(),
            name_w.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    if ok == 0 {
        return Err(last_error(format!("resolving account {name:?}")));
    }
    sid_to_string(sid.as_mut_ptr().cast())
}

impl KeyProvInfo {
    /// The key it names, for [`super::plan::keys_to_delete`].
    pub fn key_ref(&self) -> super::plan::KeyRef {
        super::plan::KeyRef {
            provider: self.provider.clone(),
            container: self.container.clone(),
            provider_type: self.provider_type,
            machine: self.flags & CRYPT_MACHINE_KEYSET_FLAG != 0,
        }
    }
}

/// `CRYPT_MACHINE_KEYSET` and `NCRYPT_MACHINE_KEY_FLAG` (the same bit).
const CRYPT_MACHINE_KEYSET_FLAG: u32 = 0x20;

/// The names of every system store of `location` (`CertEnumSystemStore`).
pub fn system_store_names(location: StoreLocation) -> Result<Vec<String>, Win32Error> {
    use windows_sys::Win32::Security::Cryptography::{CERT_SYSTEM_STORE_INFO, CertEnumSystemStore};
    unsafe extern "system" fn collect(
        name: *const c_void,
        _flags: u32,
        _info: *const CERT_SYSTEM_STORE_INFO,
        _reserved: *const c_void,
        arg: *mut c_void,
    ) -> windows_sys::core::BOOL {
        // SAFETY: `arg` is the Vec passed below, alive for the enumeration; `name` is the
        // store's NUL-terminated UTF-16 name.
        unsafe {
            let names = &mut *arg.cast::<Vec<String>>();
            names.push(from_wide_ptr(name.cast()));
        }
        1
    }
    let mut names: Vec<String> = Vec::new();
    // SAFETY: the callback matches PFN_CERT_ENUM_SYSTEM_STORE and only touches `names`.
    let ok = unsafe {
        CertEnumSystemStore(
            location_flag(location),
            ptr::null(),
            ptr::from_mut(&mut names).cast(),
            Some(collect),
        )
    };
    if ok == 0 {
        return Err(last_error(format!(
            "enumerating the {} system stores",
            location.name()
        )));
    }
    Ok(names)
}

/// Deletes a private key: a CAPI key container (`CRYPT_DELETEKEYSET`) or a CNG key
/// (`NCryptDeleteKey`).
pub fn delete_key(key: &super::plan::KeyRef) -> Result<(), Win32Error> {
    use windows_sys::Win32::Security::Cryptography::{
        CRYPT_DELETEKEYSET, CryptAcquireContextW, NCRYPT_KEY_HANDLE, NCRYPT_PROV_HANDLE,
        NCRYPT_SILENT_FLAG, NCryptDeleteKey, NCryptOpenKey, NCryptOpenStorageProvider,
    };
    let container = wide(&key.container);
    let provider = wide(&key.provider);
    // An empty provider name means the default provider: null, not "".
    let provider_ptr = if key.provider.is_empty() {
        ptr::null()
    } else {
        provider.as_ptr()
    };
    let machine = if key.machine {
        CRYPT_MACHINE_KEYSET_FLAG
    } else {
        0
    };
    if key.provider_type != 0 {
        let mut handle = 0usize;
        // SAFETY: NUL-terminated names alive for the call; DELETEKEYSET returns no handle.
        let ok = unsafe {
            CryptAcquireContextW(
                &mut handle,
                container.as_ptr(),
                provider_ptr,
                key.provider_type,
                CRYPT_DELETEKEYSET | machine,
            )
        };
        if ok == 0 {
            return Err(last_error(format!(
                "deleting key container {}",
                key.container
            )));
        }
        return Ok(());
    }
    let mut storage: NCRYPT_PROV_HANDLE = 0;
    // SAFETY: the provider name is NUL-terminated; the handle is freed below.
    let rc = unsafe { NCryptOpenStorageProvider(&mut storage, provider_ptr, 0) };
    if rc != 0 {
        return Err(Win32Error {
            what: format!("opening key storage provider {}", key.provider),
            code: rc as u32,
        });
    }
    let mut handle: NCRYPT_KEY_HANDLE = 0;
    // SAFETY: `storage` is open; the key name is NUL-terminated.
    let rc = unsafe {
        NCryptOpenKey(
            storage,
            &mut handle,
            container.as_ptr(),
            0,
            machine | NCRYPT_SILENT_FLAG,
        )
    };
    let result = if rc != 0 {
        Err(Win32Error {
            what: format!("opening CNG key {}", key.container),
            code: rc as u32,
        })
    } else {
        // SAFETY: `handle` is an open key; NCryptDeleteKey frees it when it succeeds (and
        // only then: it is freed here on failure).
        let rc = unsafe { NCryptDeleteKey(handle, 0) };
        if rc != 0 {
            // SAFETY: the key handle is still ours after a failed delete.
            unsafe { NCryptFreeObject(handle) };
            Err(Win32Error {
                what: format!("deleting CNG key {}", key.container),
                code: rc as u32,
            })
        } else {
            Ok(())
        }
    };
    // SAFETY: the provider handle opened above, freed once.
    unsafe { NCryptFreeObject(storage) };
    result
}
