//! HTTP.sys SSL bindings (`cfg(windows)`; issue 15): reads every IP:port and hostname:port
//! record (`HttpQueryServiceConfiguration`, enumerated with `HttpServiceConfigQueryNext`)
//! into [`Binding`]s with all their parameters, and replaces one record by another with only
//! the hash changed ([`plan::bindings_to_move`] decides which). Replacing uses
//! `HttpUpdateServiceConfiguration` where this Windows has it (looked up at run time: it is
//! missing on some servers, and a static import would keep the agent from starting there),
//! else delete + set, putting the old record back if the set fails. Central certificate
//! store records carry no hash and are never read.
//!
//! Under Wine the query always answers `ERROR_FILE_NOT_FOUND` (no records), so only that
//! path runs there; the rest is compiled clippy-clean and run by the Windows workflow.

use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr;

use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER, ERROR_NO_MORE_ITEMS, NO_ERROR,
};
use windows_sys::Win32::Networking::HttpServer::{
    HTTP_INITIALIZE_CONFIG, HTTP_SERVICE_CONFIG_ID, HTTP_SERVICE_CONFIG_SSL_KEY,
    HTTP_SERVICE_CONFIG_SSL_PARAM, HTTP_SERVICE_CONFIG_SSL_QUERY, HTTP_SERVICE_CONFIG_SSL_SET,
    HTTP_SERVICE_CONFIG_SSL_SNI_KEY, HTTP_SERVICE_CONFIG_SSL_SNI_QUERY,
    HTTP_SERVICE_CONFIG_SSL_SNI_SET, HTTPAPI_VERSION, HttpDeleteServiceConfiguration,
    HttpInitialize, HttpQueryServiceConfiguration, HttpServiceConfigQueryNext,
    HttpServiceConfigSSLCertInfo, HttpServiceConfigSslSniCertInfo, HttpSetServiceConfiguration,
    HttpTerminate,
};
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::core::GUID;

use super::plan::{Binding, BindingKey};
use super::sys::{Win32Error, wide};

/// Records read in one enumeration before giving up (a machine has a handful).
const MAX_RECORDS: u32 = 10_000;

fn error(what: &str, code: u32) -> Win32Error {
    Win32Error {
        what: what.to_owned(),
        code,
    }
}

/// `HttpInitialize(HTTP_INITIALIZE_CONFIG)` … `HttpTerminate`.
struct Session;

impl Session {
    fn open() -> Result<Session, Win32Error> {
        let version = HTTPAPI_VERSION {
            HttpApiMajorVersion: 1,
            HttpApiMinorVersion: 0,
        };
        // SAFETY: documented arguments; the reserved pointer is null.
        let rc = unsafe { HttpInitialize(version, HTTP_INITIALIZE_CONFIG, ptr::null_mut()) };
        if rc != NO_ERROR {
            return Err(error("HttpInitialize", rc));
        }
        Ok(Session)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: paired with the successful HttpInitialize of `open`.
        unsafe { HttpTerminate(HTTP_INITIALIZE_CONFIG, ptr::null_mut()) };
    }
}

fn from_wide(p: *const u16) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut len = 0usize;
    // SAFETY: HTTP.sys returns NUL-terminated UTF-16 inside the output buffer; read up to
    // the terminator, bounded.
    unsafe {
        while *p.add(len) != 0 && len < 32_768 {
            len += 1;
        }
        Some(String::from_utf16_lossy(std::slice::from_raw_parts(p, len)))
    }
}

/// # Safety
/// `address` points at a SOCKADDR of its family's size (HTTP.sys output).
unsafe fn socket_address(address: *const SOCKADDR) -> Option<SocketAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: per the caller, the family field is readable and decides the layout.
    unsafe {
        match (*address).sa_family {
            AF_INET => {
                let v4 = &*address.cast::<SOCKADDR_IN>();
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.S_un.S_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(v4.sin_port)))
            }
            AF_INET6 => {
                let v6 = &*address.cast::<SOCKADDR_IN6>();
                let ip = Ipv6Addr::from(v6.sin6_addr.u.Byte);
                Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(v6.sin6_port)))
            }
            _ => None,
        }
    }
}

fn storage_of(address: SocketAddr) -> SOCKADDR_STORAGE {
    let mut storage = SOCKADDR_STORAGE::default();
    let target = ptr::from_mut(&mut storage);
    // SAFETY: SOCKADDR_STORAGE is large and aligned enough for either family's struct.
    unsafe {
        match address {
            SocketAddr::V4(v4) => {
                let out = &mut *target.cast::<SOCKADDR_IN>();
                out.sin_family = AF_INET;
                out.sin_port = v4.port().to_be();
                out.sin_addr.S_un.S_addr = u32::from(*v4.ip()).to_be();
            }
            SocketAddr::V6(v6) => {
                let out = &mut *target.cast::<SOCKADDR_IN6>();
                out.sin6_family = AF_INET6;
                out.sin6_port = v6.port().to_be();
                out.sin6_addr.u.Byte = v6.ip().octets();
            }
        }
    }
    storage
}

fn guid_bytes(guid: &GUID) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&guid.data1.to_le_bytes());
    out[4..6].copy_from_slice(&guid.data2.to_le_bytes());
    out[6..8].copy_from_slice(&guid.data3.to_le_bytes());
    out[8..].copy_from_slice(&guid.data4);
    out
}

fn guid_of(bytes: &[u8; 16]) -> GUID {
    GUID {
        data1: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        data2: u16::from_le_bytes([bytes[4], bytes[5]]),
        data3: u16::from_le_bytes([bytes[6], bytes[7]]),
        data4: [
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ],
    }
}

/// # Safety
/// `param` is an HTTP.sys output record whose pointers point into the same live buffer.
unsafe fn binding_of(key: BindingKey, param: &HTTP_SERVICE_CONFIG_SSL_PARAM) -> Binding {
    let hash: &[u8] = if param.pSslHash.is_null() {
        &[]
    } else {
        // SAFETY: HTTP.sys gives the hash and its length together.
        unsafe {
            std::slice::from_raw_parts(
                param.pSslHash.cast::<u8>(),
                param.SslHashLength.min(64) as usize,
            )
        }
    };
    Binding {
        key,
        thumbprint: crate::decode::hex_upper(hash),
        app_id: guid_bytes(&param.AppId),
        store_name: from_wide(param.pSslCertStoreName),
        cert_check_mode: param.DefaultCertCheckMode,
        revocation_freshness_time: param.DefaultRevocationFreshnessTime,
        revocation_url_retrieval_timeout: param.DefaultRevocationUrlRetrievalTimeout,
        ctl_identifier: from_wide(param.pDefaultSslCtlIdentifier),
        ctl_store_name: from_wide(param.pDefaultSslCtlStoreName),
        flags: param.DefaultFlags,
    }
}

/// One query with a growing, 8-byte aligned output buffer; `Ok(None)` at the end of the
/// enumeration (or when HTTP.sys has no such records).
fn query(
    config: HTTP_SERVICE_CONFIG_ID,
    input: *const c_void,
    input_len: usize,
) -> Result<Option<Vec<u64>>, Win32Error> {
    let mut buffer: Vec<u64> = vec![0; 512];
    for _ in 0..4 {
        let mut needed = 0u32;
        let bytes = (buffer.len() * 8) as u32;
        // SAFETY: `input` points at a query struct of `input_len` bytes; the output buffer
        // is `bytes` long and writable.
        let rc = unsafe {
            HttpQueryServiceConfiguration(
                ptr::null_mut(),
                config,
                input,
                input_len as u32,
                buffer.as_mut_ptr().cast(),
                bytes,
                &mut needed,
                ptr::null(),
            )
        };
        match rc {
            NO_ERROR => return Ok(Some(buffer)),
            ERROR_NO_MORE_ITEMS | ERROR_FILE_NOT_FOUND => return Ok(None),
            ERROR_INSUFFICIENT_BUFFER => buffer = vec![0; (needed as usize).div_ceil(8) + 1],
            other => return Err(error("HttpQueryServiceConfiguration", other)),
        }
    }
    Err(error(
        "HttpQueryServiceConfiguration: the record kept growing",
        ERROR_INSUFFICIENT_BUFFER,
    ))
}

/// Every IP:port and hostname:port SSL binding of this machine.
pub fn bindings() -> Result<Vec<Binding>, Win32Error> {
    let _session = Session::open()?;
    let mut out = Vec::new();
    for token in 0..MAX_RECORDS {
        let input = HTTP_SERVICE_CONFIG_SSL_QUERY {
            QueryDesc: HttpServiceConfigQueryNext,
            KeyDesc: HTTP_SERVICE_CONFIG_SSL_KEY {
                pIpPort: ptr::null_mut(),
            },
            dwToken: token,
        };
        let Some(buffer) = query(
            HttpServiceConfigSSLCertInfo,
            ptr::from_ref(&input).cast(),
            std::mem::size_of_val(&input),
        )?
        else {
            break;
        };
        // SAFETY: on success the buffer starts with an HTTP_SERVICE_CONFIG_SSL_SET whose
        // pointers point into the buffer itself.
        unsafe {
            let set = &*buffer.as_ptr().cast::<HTTP_SERVICE_CONFIG_SSL_SET>();
            if let Some(address) = socket_address(set.KeyDesc.pIpPort) {
                out.push(binding_of(BindingKey::IpPort(address), &set.ParamDesc));
            }
        }
    }
    for token in 0..MAX_RECORDS {
        let input = HTTP_SERVICE_CONFIG_SSL_SNI_QUERY {
            QueryDesc: HttpServiceConfigQueryNext,
            KeyDesc: HTTP_SERVICE_CONFIG_SSL_SNI_KEY::default(),
            dwToken: token,
        };
        let Some(buffer) = query(
            HttpServiceConfigSslSniCertInfo,
            ptr::from_ref(&input).cast(),
            std::mem::size_of_val(&input),
        )?
        else {
            break;
        };
        // SAFETY: as above, for an HTTP_SERVICE_CONFIG_SSL_SNI_SET.
        unsafe {
            let set = &*buffer.as_ptr().cast::<HTTP_SERVICE_CONFIG_SSL_SNI_SET>();
            let port =
                socket_address(ptr::from_ref(&set.KeyDesc.IpPort).cast()).map_or(0, |a| a.port());
            if let Some(host) = from_wide(set.KeyDesc.Host) {
                out.push(binding_of(
                    BindingKey::HostnamePort { host, port },
                    &set.ParamDesc,
                ));
            }
        }
    }
    Ok(out)
}

/// A record to write, with the memory its pointers point at.
struct Record {
    key: BindingKey,
    address: SOCKADDR_STORAGE,
    host: Vec<u16>,
    hash: Vec<u8>,
    store: Option<Vec<u16>>,
    ctl_identifier: Option<Vec<u16>>,
    ctl_store: Option<Vec<u16>>,
    binding: Binding,
}

impl Record {
    fn new(binding: &Binding) -> Result<Record, Win32Error> {
        let hash = crate::decode::hex_decode(&binding.thumbprint)
            .ok_or_else(|| error("the binding's thumbprint is not hex", 0))?;
        let (address, host) = match &binding.key {
            BindingKey::IpPort(address) => (storage_of(*address), Vec::new()),
            BindingKey::HostnamePort { host, port } => (
                storage_of(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port)),
                wide(host),
            ),
        };
        Ok(Record {
            key: binding.key.clone(),
            address,
            host,
            hash,
            store: binding.store_name.as_deref().map(wide),
            ctl_identifier: binding.ctl_identifier.as_deref().map(wide),
            ctl_store: binding.ctl_store_name.as_deref().map(wide),
            binding: binding.clone(),
        })
    }

    fn param(&mut self) -> HTTP_SERVICE_CONFIG_SSL_PARAM {
        let pointer =
            |text: &mut Option<Vec<u16>>| text.as_mut().map_or(ptr::null_mut(), |t| t.as_mut_ptr());
        HTTP_SERVICE_CONFIG_SSL_PARAM {
            SslHashLength: self.hash.len() as u32,
            pSslHash: self.hash.as_mut_ptr().cast(),
            AppId: guid_of(&self.binding.app_id),
            pSslCertStoreName: pointer(&mut self.store),
            DefaultCertCheckMode: self.binding.cert_check_mode,
            DefaultRevocationFreshnessTime: self.binding.revocation_freshness_time,
            DefaultRevocationUrlRetrievalTimeout: self.binding.revocation_url_retrieval_timeout,
            pDefaultSslCtlIdentifier: pointer(&mut self.ctl_identifier),
            pDefaultSslCtlStoreName: pointer(&mut self.ctl_store),
            DefaultFlags: self.binding.flags,
        }
    }

    /// Calls `f(config id, record, size)` with the record laid out for its kind.
    fn with_set(
        &mut self,
        f: &mut dyn FnMut(HTTP_SERVICE_CONFIG_ID, *const c_void, u32) -> u32,
    ) -> u32 {
        let param = self.param();
        match self.key {
            BindingKey::IpPort(_) => {
                let set = HTTP_SERVICE_CONFIG_SSL_SET {
                    KeyDesc: HTTP_SERVICE_CONFIG_SSL_KEY {
                        pIpPort: ptr::from_mut(&mut self.address).cast(),
                    },
                    ParamDesc: param,
                };
                f(
                    HttpServiceConfigSSLCertInfo,
                    ptr::from_ref(&set).cast(),
                    std::mem::size_of_val(&set) as u32,
                )
            }
            BindingKey::HostnamePort { .. } => {
                let set = HTTP_SERVICE_CONFIG_SSL_SNI_SET {
                    KeyDesc: HTTP_SERVICE_CONFIG_SSL_SNI_KEY {
                        IpPort: self.address,
                        Host: self.host.as_mut_ptr(),
                    },
                    ParamDesc: param,
                };
                f(
                    HttpServiceConfigSslSniCertInfo,
                    ptr::from_ref(&set).cast(),
                    std::mem::size_of_val(&set) as u32,
                )
            }
        }
    }
}

type UpdateFn = unsafe extern "system" fn(
    *mut c_void,
    HTTP_SERVICE_CONFIG_ID,
    *const c_void,
    u32,
    *const c_void,
) -> u32;

/// `HttpUpdateServiceConfiguration`, where this Windows exports it.
fn update_function() -> Option<UpdateFn> {
    let module = wide("httpapi.dll");
    // SAFETY: httpapi.dll is loaded (the agent imports it); the name is NUL-terminated.
    unsafe {
        let handle = GetModuleHandleW(module.as_ptr());
        if handle.is_null() {
            return None;
        }
        let address = GetProcAddress(handle, c"HttpUpdateServiceConfiguration".as_ptr().cast())?;
        // SAFETY: the exported function has exactly this signature (http.h).
        Some(std::mem::transmute::<
            unsafe extern "system" fn() -> isize,
            UpdateFn,
        >(address))
    }
}

/// Replaces the record `old` by `new` (same key, new hash, every other field kept).
pub fn replace(old: &Binding, new: &Binding) -> Result<(), Win32Error> {
    let _session = Session::open()?;
    let mut new_record = Record::new(new)?;
    if let Some(update) = update_function() {
        let rc = new_record.with_set(&mut |config, set, size| {
            // SAFETY: `set` is a complete record of `size` bytes for `config`.
            unsafe { update(ptr::null_mut(), config, set, size, ptr::null()) }
        });
        if rc == NO_ERROR {
            return Ok(());
        }
        tracing::debug!(
            code = rc,
            "HttpUpdateServiceConfiguration refused; delete and set"
        );
    }
    let mut old_record = Record::new(old)?;
    let rc = old_record.with_set(&mut |config, set, size| {
        // SAFETY: as above.
        unsafe { HttpDeleteServiceConfiguration(ptr::null_mut(), config, set, size, ptr::null()) }
    });
    if rc != NO_ERROR {
        return Err(error("HttpDeleteServiceConfiguration", rc));
    }
    let rc = new_record.with_set(&mut |config, set, size| {
        // SAFETY: as above.
        unsafe { HttpSetServiceConfiguration(ptr::null_mut(), config, set, size, ptr::null()) }
    });
    if rc == NO_ERROR {
        return Ok(());
    }
    // Never leave the endpoint without a binding: the old record goes back.
    let restored = old_record.with_set(&mut |config, set, size| {
        // SAFETY: as above.
        unsafe { HttpSetServiceConfiguration(ptr::null_mut(), config, set, size, ptr::null()) }
    });
    Err(error(
        &format!(
            "HttpSetServiceConfiguration for {} (old record {})",
            new.key,
            if restored == NO_ERROR {
                "restored"
            } else {
                "NOT restored"
            }
        ),
        rc,
    ))
}
