//! The Azure VM extension handler (SPEC §7, §10): what the Azure guest agent runs
//! (`akvsync handler install|enable|disable|uninstall|update`) and the service side of
//! the protocol (status and heartbeat files written by the long-running service).
//!
//! One job per submodule: `environment` reads `HandlerEnvironment.json`; `seqno` picks the
//! sequence number and remembers the last one processed; `status` renders and atomically
//! writes `<n>.status`; `config` is the hand-off from `enable` to the service (files in the
//! state directory); `manager` starts, reloads and stops the service (systemd or a
//! detached process); `lifecycle` is the five commands; `reporter` turns sync rounds into
//! status files; `logs` is the size-capped, rotated log in `logFolder`; `service` runs the
//! agent in extension mode.

pub mod config;
pub mod environment;
pub mod lifecycle;
pub mod logs;
pub mod manager;
pub mod reporter;
pub mod seqno;
pub mod service;
pub mod status;
