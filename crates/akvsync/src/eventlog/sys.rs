//! The event log's Win32 side: the source's registry key (`service install`/`uninstall`)
//! and a `tracing` layer that reports every warning and error with `ReportEventW`.

use std::fmt::Debug;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use windows_sys::Win32::Foundation::{HANDLE, NO_ERROR};
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_WARNING_TYPE, RegisterEventSourceW,
    ReportEventW,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_WRITE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
    RegCloseKey, RegCreateKeyExW, RegDeleteTreeW, RegSetValueExW,
};

use super::{MESSAGE_FILE, SOURCE, SOURCE_KEY, event_id, text};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Creates the source's key with its message file and types (errors, warnings, information).
pub fn register_source() -> Result<(), String> {
    let key_name = wide(SOURCE_KEY);
    let mut key: HKEY = std::ptr::null_mut();
    // SAFETY: HKLM is a predefined key; the name is NUL-terminated; `key` receives a handle
    // we close below.
    let rc = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key_name.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_WRITE,
            std::ptr::null(),
            &mut key,
            std::ptr::null_mut(),
        )
    };
    if rc != NO_ERROR {
        return Err(format!("creating HKLM\\{SOURCE_KEY}: error {rc}"));
    }
    let file = wide(MESSAGE_FILE);
    let types: u32 = 7;
    let values: [(&str, u32, &[u8]); 2] = [
        (
            "EventMessageFile",
            REG_EXPAND_SZ,
            // SAFETY: reinterpreting the u16 buffer as its bytes.
            unsafe { std::slice::from_raw_parts(file.as_ptr().cast(), file.len() * 2) },
        ),
        ("TypesSupported", REG_DWORD, &types.to_le_bytes()),
    ];
    let mut result = Ok(());
    for (name, kind, data) in values {
        let name_w = wide(name);
        // SAFETY: `key` is open for writing; name and data are alive for the call.
        let rc = unsafe {
            RegSetValueExW(
                key,
                name_w.as_ptr(),
                0,
                kind,
                data.as_ptr(),
                data.len() as u32,
            )
        };
        if rc != NO_ERROR && result.is_ok() {
            result = Err(format!("setting {name} of HKLM\\{SOURCE_KEY}: error {rc}"));
        }
    }
    // SAFETY: closes the handle opened above, once.
    unsafe { RegCloseKey(key) };
    result
}

/// Removes the source's key (nothing there is not an error).
pub fn remove_source() -> Result<(), String> {
    let key_name = wide(SOURCE_KEY);
    // SAFETY: HKLM is a predefined key; the name is NUL-terminated.
    let rc = unsafe { RegDeleteTreeW(HKEY_LOCAL_MACHINE, key_name.as_ptr()) };
    match rc {
        NO_ERROR | 2 => Ok(()), // 2: ERROR_FILE_NOT_FOUND
        other => Err(format!("removing HKLM\\{SOURCE_KEY}: error {other}")),
    }
}

/// A registered event source; the `tracing` layer that reports to it.
#[derive(Debug)]
pub struct Layer(HANDLE);

// SAFETY: an event source handle may be used from any thread (ReportEvent is thread-safe).
unsafe impl Send for Layer {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for Layer {}

impl Drop for Layer {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegisterEventSourceW and is released once.
        unsafe { DeregisterEventSource(self.0) };
    }
}

/// The layer, or `None` when the source cannot be opened (the log file still has it all).
pub fn layer() -> Option<Layer> {
    let source = wide(SOURCE);
    // SAFETY: null server = this machine; the name is NUL-terminated.
    let handle = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    (!handle.is_null()).then_some(Layer(handle))
}

#[derive(Default)]
struct Fields {
    message: String,
    event_id: Option<u64>,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "event_id" {
            self.event_id = Some(value);
        } else {
            self.others.push((field.name(), value.to_string()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "event_id" {
            self.event_id = u64::try_from(value).ok();
        } else {
            self.others.push((field.name(), value.to_string()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.others.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others.push((field.name(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let is_error = level == Level::ERROR;
        let id = event_id(is_error, fields.event_id);
        let body = wide(&text(&fields.message, &fields.others));
        let strings = [body.as_ptr()];
        let kind = if is_error {
            EVENTLOG_ERROR_TYPE
        } else {
            EVENTLOG_WARNING_TYPE
        };
        // SAFETY: the source handle is open; one NUL-terminated string alive for the call;
        // no SID, no raw data.
        unsafe {
            ReportEventW(
                self.0,
                kind,
                0,
                id,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            )
        };
    }
}
