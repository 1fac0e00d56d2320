//! Windows private directories (issue 15, finding 3 of issue 16): `Dir::create` with a mode
//! that gives nobody but the owner access (0700: the state directory, `%ProgramData%\akvsync`)
//! creates the directory with [`trust::WINDOWS_PRIVATE_DACL`] (protected: SYSTEM and
//! Administrators only, not inherited from `%ProgramData%`, where Users may create files),
//! and uses an existing one only when SYSTEM, Administrators or this account owns it
//! ([`trust::windows_owner_trusted`]), resetting its DACL when it differs.

use std::io;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SE_FILE_OBJECT,
    SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, GetTokenInformation,
    OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::trust;

const SDDL_REVISION_1: u32 = 1;

fn wide(path: &Path) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    path.as_os_str()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

fn wide_str(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn from_wide(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: a NUL-terminated string Windows returned; read up to its terminator.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

/// A security descriptor Windows allocated; freed with `LocalFree`.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Drop for Descriptor {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the API that returned it with LocalAlloc; freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

fn private_descriptor() -> io::Result<Descriptor> {
    let sddl = wide_str(trust::WINDOWS_PRIVATE_DACL);
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: the SDDL is NUL-terminated; `sd` receives a LocalAlloc'ed descriptor.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Descriptor(sd))
}

fn sid_string(sid: PSID) -> Option<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID; the string is LocalAlloc'ed and freed below.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return None;
        }
        let out = from_wide(text);
        LocalFree(text.cast());
        Some(out)
    }
}

/// The SID of the account this process runs as.
fn this_account() -> Option<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the current-process pseudo handle; the token is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let mut buffer = vec![0u64; 64];
    let mut needed = 0u32;
    // SAFETY: the buffer is 512 bytes, 8-byte aligned; TOKEN_USER and its SID fit.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            (buffer.len() * 8) as u32,
            &mut needed,
        )
    };
    // SAFETY: closes the token opened above, once.
    unsafe { CloseHandle(token) };
    if ok == 0 {
        return None;
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID points into it.
    let user = unsafe { &*buffer.as_ptr().cast::<TOKEN_USER>() };
    sid_string(user.User.Sid)
}

/// The owner SID and the DACL (SDDL) of an existing file or directory.
pub fn owner_and_dacl(path: &Path) -> io::Result<(String, String)> {
    let name = wide(path);
    let mut owner: PSID = ptr::null_mut();
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: the name is NUL-terminated; `sd` receives a LocalAlloc'ed descriptor that
    // `owner` and `dacl` point into.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let sd = Descriptor(sd);
    let owner = sid_string(owner).unwrap_or_default();
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sd` is valid; the string is LocalAlloc'ed and freed below.
    let dacl_text = unsafe {
        if ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd.0,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        ) == 0
        {
            String::new()
        } else {
            let out = from_wide(text);
            LocalFree(text.cast());
            out
        }
    };
    Ok((owner, dacl_text))
}

/// Creates `path` (parents as usual) as a private directory, or checks an existing one.
pub fn create_private(path: &Path) -> io::Result<()> {
    let descriptor = private_descriptor()?;
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let attributes = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: descriptor.0,
            bInheritHandle: 0,
        };
        let name = wide(path);
        // SAFETY: NUL-terminated name; the attributes and descriptor outlive the call.
        if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } == 0 {
            let error = io::Error::last_os_error();
            if !path.is_dir() {
                return Err(error);
            }
        } else {
            return Ok(());
        }
    }
    let (owner, dacl) = owner_and_dacl(path)?;
    let me = this_account();
    if !trust::windows_owner_trusted(&owner, me.as_deref()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use {}: it is owned by {owner}, not by SYSTEM, Administrators or \
                 this account; another account may have created it to redirect akvsync's \
                 writes (remove it, or give it to Administrators)",
                path.display()
            ),
        ));
    }
    if dacl != trust::WINDOWS_PRIVATE_DACL {
        let mut present = 0;
        let mut defaulted = 0;
        let mut acl: *mut ACL = ptr::null_mut();
        let name = wide(path);
        // SAFETY: the descriptor is valid; the DACL pointer points into it; the name is
        // NUL-terminated; no owner or group is changed.
        let rc = unsafe {
            GetSecurityDescriptorDacl(descriptor.0, &mut present, &mut acl, &mut defaulted);
            SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                acl,
                ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
    }
    Ok(())
}
