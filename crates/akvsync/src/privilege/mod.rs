//! Least privilege (issue 16): what the service needs when it runs as a dedicated account
//! instead of root, derived from its settings, and nothing more.
//!
//! - [`plan`] (pure, tested everywhere): the directories the settings write, the Linux
//!   capabilities they need (with the JSON path that needs each one), and the systemd units
//!   hooks reload or restart; [`dropin`] and [`polkit_rule`] render them as the unit drop-in
//!   and the polkit rule `akvsync service install` writes.
//! - `caps` (Linux): reads and narrows the process's capabilities at start (what the unit
//!   grants beyond the plan is dropped; hooks never inherit any).
//! - `install` (Linux): `akvsync service install|uninstall` — the account, the directories
//!   owned by it, the drop-in, the polkit rule.
//!
//! Why no capability is usually needed: the account owns every directory it writes
//! (`service install` makes it so), creates its files there, sets their mode before their
//! owner and ACLs only on files and directories it owns. Only an output set whose owner is
//! another account (or whose group the account is not a member of) needs `CAP_CHOWN`, and a
//! metrics listener on a port below 1024 needs `CAP_NET_BIND_SERVICE`.

#[cfg(target_os = "linux")]
pub mod caps;
#[cfg(target_os = "linux")]
pub mod install;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::settings::Settings;

/// A Linux capability the settings may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `fchown` of output files to another account or a group we are not in.
    Chown,
    /// Binding the metrics listener below port 1024.
    NetBindService,
}

impl Capability {
    /// The name systemd and `capabilities(7)` use.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Chown => "CAP_CHOWN",
            Capability::NetBindService => "CAP_NET_BIND_SERVICE",
        }
    }

    /// The bit number (`linux/capability.h`).
    pub fn bit(self) -> u32 {
        match self {
            Capability::Chown => 0,
            Capability::NetBindService => 10,
        }
    }
}

/// The account the service runs as, as far as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary and supplementary groups.
    pub gids: Vec<u32>,
}

/// Resolves the owner and group names of output sets (NSS on Linux; a table in tests).
pub trait Resolve {
    fn uid(&self, name: &str) -> Option<u32>;
    fn gid(&self, name: &str) -> Option<u32>;
}

/// What the settings need from the system to run as `account`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Directories the service writes (store, outputs, metrics textfile), sorted.
    pub writable: Vec<String>,
    /// Capabilities, each with the first setting that needs it.
    pub capabilities: Vec<(Capability, String)>,
    /// `(unit, polkit verb)` for `reloadUnit`/`restartUnit` hooks (`nginx.service`,
    /// `reload-or-try-restart`).
    pub units: Vec<(String, &'static str)>,
    /// Number of `command` hooks (they run as the account, without capabilities).
    pub command_hooks: usize,
}

impl Plan {
    pub fn needs(&self, capability: Capability) -> bool {
        self.capabilities.iter().any(|(c, _)| *c == capability)
    }
}

/// Derives the [`Plan`] for `settings` run as `account`.
pub fn plan(settings: &Settings, account: &Account, resolve: &dyn Resolve) -> Plan {
    let mut capabilities: Vec<(Capability, String)> = Vec::new();
    let mut need = |capability: Capability, why: String| {
        if !capabilities.iter().any(|(c, _)| *c == capability) {
            capabilities.push((capability, why));
        }
    };
    for (index, set) in settings.akvsync.outputs.iter().enumerate() {
        if let Some(owner) = &set.owner {
            let uid = resolve.uid(owner).or_else(|| owner.parse().ok());
            if uid != Some(account.uid) {
                need(
                    Capability::Chown,
                    format!("akvsync.outputs[{index}].owner = {owner}"),
                );
            }
        }
        if let Some(group) = &set.group {
            let gid = resolve.gid(group).or_else(|| group.parse().ok());
            if !gid.is_some_and(|g| account.gids.contains(&g)) {
                need(
                    Capability::Chown,
                    format!(
                        "akvsync.outputs[{index}].group = {group} (not a group of {})",
                        account.name
                    ),
                );
            }
        }
    }
    if let Some(listen) = settings.akvsync.metrics.listen
        && listen.port() != 0
        && listen.port() < 1024
    {
        need(
            Capability::NetBindService,
            format!("akvsync.metrics.listen = {listen}"),
        );
    }
    capabilities.sort();
    let mut units = BTreeSet::new();
    let mut command_hooks = 0;
    for hook in &settings.akvsync.hooks {
        match (hook.kind, hook.command.as_slice()) {
            ("reloadUnit" | "restartUnit", [_, verb, unit]) => {
                // The verb polkit sees (systemd: "reload-or-" + the job type for the
                // reload-if-possible methods).
                let verb = if verb == "try-reload-or-restart" {
                    "reload-or-try-restart"
                } else {
                    "restart"
                };
                units.insert((unit_name(unit), verb));
            }
            ("restartService", _) => {}
            _ => command_hooks += 1,
        }
    }
    Plan {
        writable: settings.written_directories(),
        capabilities,
        units: units.into_iter().collect(),
        command_hooks,
    }
}

/// The name polkit sees: `systemctl reload nginx` acts on `nginx.service`.
fn unit_name(unit: &str) -> String {
    const SUFFIXES: [&str; 11] = [
        ".service",
        ".socket",
        ".target",
        ".timer",
        ".path",
        ".mount",
        ".automount",
        ".swap",
        ".slice",
        ".scope",
        ".device",
    ];
    if SUFFIXES.iter().any(|s| unit.ends_with(s)) {
        unit.to_owned()
    } else {
        format!("{unit}.service")
    }
}

/// A path as a systemd unit-file word: quoted when it holds a space or a quote.
pub fn unit_word(path: &str) -> String {
    if path
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        path.to_owned()
    }
}

/// The drop-in `akvsync service install` writes next to the shipped unit: exactly the
/// settings' directories writable, exactly the capabilities they need (both bounding and
/// ambient: with none, the account has none), the account and the state directory.
pub fn dropin(plan: &Plan, account: &str, settings_path: &str, state_dir: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `akvsync service install` from {settings_path}; run it again after\n\
         # editing the settings (it rewrites this file), then `systemctl restart akvsync`."
    );
    let _ = writeln!(text, "[Service]");
    let _ = writeln!(text, "User={account}\nGroup={account}");
    let words: Vec<String> = plan.writable.iter().map(|p| unit_word(p)).collect();
    if words.is_empty() {
        let _ = writeln!(text, "# The settings write no directory besides the state.");
    } else {
        let _ = writeln!(text, "ReadWritePaths={}", words.join(" "));
    }
    let _ = writeln!(text, "ReadWritePaths={}", unit_word(state_dir));
    for (capability, why) in &plan.capabilities {
        let _ = writeln!(text, "# {}: {why}", capability.name());
    }
    let names: Vec<&str> = plan.capabilities.iter().map(|(c, _)| c.name()).collect();
    // An empty assignment resets the list: what the shipped unit granted does not add up.
    let _ = writeln!(text, "CapabilityBoundingSet=\nAmbientCapabilities=");
    if !names.is_empty() {
        let _ = writeln!(text, "CapabilityBoundingSet={}", names.join(" "));
        let _ = writeln!(text, "AmbientCapabilities={}", names.join(" "));
    }
    text
}

/// The polkit rule letting `account` reload or restart exactly the units its hooks name
/// (`None` when no hook names a unit: nothing is granted).
pub fn polkit_rule(plan: &Plan, account: &str, settings_path: &str) -> Option<String> {
    if plan.units.is_empty() {
        return None;
    }
    let conditions: Vec<String> = plan
        .units
        .iter()
        .map(|(unit, verb)| {
            format!(
                "(unit == {} && verb == {})",
                js_string(unit),
                js_string(verb)
            )
        })
        .collect();
    Some(format!(
        "// Written by `akvsync service install` from {settings_path}: the akvsync service\n\
         // account may reload or restart exactly the units its hooks name, nothing else.\n\
         polkit.addRule(function(action, subject) {{\n    \
             if (action.id == \"org.freedesktop.systemd1.manage-units\" &&\n        \
                 subject.user == {}) {{\n        \
                 var unit = action.lookup(\"unit\"), verb = action.lookup(\"verb\");\n        \
                 if ({}) {{\n            \
                     return polkit.Result.YES;\n        \
                 }}\n    \
             }}\n\
         }});\n",
        js_string(account),
        conditions.join(" ||\n            ")
    ))
}

/// A JavaScript string literal (unit and account names are restricted by validation; this
/// escapes anyway).
fn js_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Platform, parse_bytes};

    struct Table;
    impl Resolve for Table {
        fn uid(&self, name: &str) -> Option<u32> {
            match name {
                "akvsync" => Some(990),
                "postgres" => Some(105),
                _ => None,
            }
        }
        fn gid(&self, name: &str) -> Option<u32> {
            match name {
                "akvsync" => Some(990),
                "ssl-cert" => Some(110),
                "postgres" => Some(105),
                _ => None,
            }
        }
    }

    fn account() -> Account {
        Account {
            name: "akvsync".into(),
            uid: 990,
            gids: vec![990, 110],
        }
    }

    fn settings(akvsync: &str) -> Settings {
        let text = format!(
            r#"{{"secretsManagementSettings":{{"pollingIntervalInS":"3600","observedCertificates":[
              {{"url":"https://kv1.vault.azure.net/secrets/web","certificateStoreLocation":"/srv/certs"}}]}},
              "akvsync":{akvsync}}}"#
        );
        parse_bytes(text.as_bytes(), Platform::Linux)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .settings
    }

    #[test]
    fn files_owned_by_the_account_or_its_groups_need_no_capability() {
        let plan = plan(
            &settings(
                r#"{"outputs":[{"directory":"/etc/nginx/tls","files":{"key":"{secret}.key"},
                    "owner":"akvsync","group":"ssl-cert","mode":"0640"}]}"#,
            ),
            &account(),
            &Table,
        );
        assert_eq!(plan.capabilities, vec![]);
        assert_eq!(plan.writable, vec!["/etc/nginx/tls", "/srv/certs"]);
    }

    #[test]
    fn another_owner_or_a_foreign_group_needs_cap_chown_named_by_its_path() {
        let plan = plan(
            &settings(
                r#"{"outputs":[{"directory":"/var/lib/pg","files":{"key":"{secret}.key"},
                    "group":"postgres","mode":"0640"},
                   {"directory":"/var/lib/pg2","files":{"key":"{secret}.key"},"owner":"postgres","mode":"0600"}]}"#,
            ),
            &account(),
            &Table,
        );
        assert_eq!(
            plan.capabilities,
            vec![(
                Capability::Chown,
                "akvsync.outputs[0].group = postgres (not a group of akvsync)".to_owned()
            )]
        );
        let dropin = dropin(
            &plan,
            "akvsync",
            "/etc/akvsync/settings.json",
            "/var/lib/akvsync",
        );
        assert!(dropin.contains("CapabilityBoundingSet=\nAmbientCapabilities=\n"));
        assert!(
            dropin.contains("\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\n")
        );
        assert!(dropin.contains("\nReadWritePaths=/srv/certs /var/lib/pg /var/lib/pg2\n"));
        assert!(dropin.contains("\nUser=akvsync\nGroup=akvsync\n"));
    }

    #[test]
    fn a_low_metrics_port_needs_net_bind_service_a_high_one_nothing() {
        let low = plan(
            &settings(r#"{"metrics":{"listen":"127.0.0.1:443"}}"#),
            &account(),
            &Table,
        );
        assert_eq!(low.capabilities[0].0, Capability::NetBindService);
        let high = plan(
            &settings(r#"{"metrics":{"listen":"127.0.0.1:9464"}}"#),
            &account(),
            &Table,
        );
        assert!(high.capabilities.is_empty());
    }

    #[test]
    fn unit_hooks_become_an_exact_polkit_rule_and_commands_are_counted() {
        let plan = plan(
            &settings(
                r#"{"hooks":[{"reloadUnit":"nginx"},{"restartUnit":"app@1.service"},
                    {"reloadUnit":"nginx"},{"command":["/usr/bin/true"]}]}"#,
            ),
            &account(),
            &Table,
        );
        assert_eq!(
            plan.units,
            vec![
                ("app@1.service".to_owned(), "restart"),
                ("nginx.service".to_owned(), "reload-or-try-restart")
            ]
        );
        assert_eq!(plan.command_hooks, 1);
        let rule = polkit_rule(&plan, "akvsync", "/etc/akvsync/settings.json").unwrap();
        assert!(rule.contains("subject.user == \"akvsync\""));
        assert!(rule.contains(
            "(unit == \"app@1.service\" && verb == \"restart\") ||\n            (unit == \"nginx.service\" && verb == \"reload-or-try-restart\")"
        ));
        assert!(polkit_rule(&Plan::default(), "akvsync", "x").is_none());
    }

    #[test]
    fn paths_with_spaces_are_quoted_in_the_dropin() {
        let plan = Plan {
            writable: vec!["/etc/my certs".into()],
            ..Plan::default()
        };
        let text = dropin(&plan, "akvsync", "s.json", "/var/lib/akvsync");
        assert!(text.contains("ReadWritePaths=\"/etc/my certs\"\n"));
        assert!(text.contains("ReadWritePaths=/var/lib/akvsync\n"));
        assert!(!text.contains("CAP_"));
    }
}
