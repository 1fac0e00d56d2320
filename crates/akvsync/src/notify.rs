//! systemd readiness (`Type=notify`): `READY=1`, `RELOADING=1`, `STOPPING=1` and `STATUS=`
//! datagrams to `$NOTIFY_SOCKET`, written directly (no libsystemd). Without the variable
//! (not under systemd, or on Windows) every call does nothing.

/// Sends one notification; errors are ignored, since readiness is advisory.
pub fn notify(message: &str) {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let path = path.to_string_lossy().into_owned();
        let address = match path.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
            None => SocketAddr::from_pathname(&path),
        };
        if let (Ok(address), Ok(socket)) = (address, UnixDatagram::unbound()) {
            let _ = socket.send_to_addr(message.as_bytes(), &address);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = message;
}
