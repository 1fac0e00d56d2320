//! `akvsync.outputs` file-name templates (`settings::outputs`): `check_template`,
//! `render_template` and `check_file_name` never panic, and a template that passes renders,
//! for any vault and secret name that are themselves plain names, to a name that is one
//! path component (no separator, not `.`/`..`, not hidden). The input is a template, a
//! vault name and a secret name separated by newlines; also a whole output set as JSON.
#![no_main]
use akvsync::settings::outputs::{check_file_name, check_template, render_template};
use akvsync::settings::{Platform, parse_bytes};
use libfuzzer_sys::fuzz_target;

fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0', '{', '}'])
        && !name.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let template = parts.next().unwrap_or_default();
    let vault = parts.next().unwrap_or("vault");
    let secret = parts.next().unwrap_or("secret");
    if check_template(template).is_ok() && plain(vault) && plain(secret) {
        let name = render_template(template, vault, secret);
        if check_file_name(&name).is_ok() {
            assert!(!name.contains('/') && !name.contains('\\'), "{name:?}");
            assert!(name != "." && name != ".." && !name.starts_with('.'), "{name:?}");
        }
    }
    let _ = check_file_name(&text);
    // The template inside a whole settings document: never a panic.
    let document = format!(
        r#"{{"secretsManagementSettings":{{"observedCertificates":["https://fuzzkv.vault.azure.net/secrets/web"]}},"akvsync":{{"outputs":[{{"directory":"/srv/out","files":{{"cert":{}}}}}]}}}}"#,
        serde_json::to_string(template).unwrap_or_default()
    );
    let _ = parse_bytes(document.as_bytes(), Platform::Linux);
});
