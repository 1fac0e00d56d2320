//! `authenticationSettings`: the managed-identity endpoint and which identity to use.

use url::Url;

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{DEFAULT_MSI_ENDPOINT, IdentitySettings, UserAssignedIdentity};

const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
const IDENTITY_PATH: &str = "/metadata/identity";

/// Reads an `authenticationSettings` object (wherever it was found).
pub fn parse(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> IdentitySettings {
    let mut identity = IdentitySettings::default();
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return identity;
    };
    let endpoint = reader.take("msiEndpoint", diags);
    let client = reader.take("msiClientId", diags);
    reader.finish(diags);
    let endpoint_given = endpoint.is_some();

    if let Some((value, path)) = endpoint
        && let Some(text) = fields::nonblank_string(value, &path, diags)
    {
        match normalize_endpoint(text.trim()) {
            Ok((url, warning)) => {
                identity.endpoint = url;
                if let Some(warning) = warning {
                    diags.warn(&path, warning);
                }
            }
            Err(message) => diags.error(&path, message),
        }
    }
    if let Some((value, client_path)) = client {
        if let Some(text) = fields::string(value, &client_path, diags) {
            identity.user_assigned = parse_client_id(text.trim(), &client_path, diags);
        }
        if identity.user_assigned.is_some() && !endpoint_given {
            diags.warn(
                &path.field("msiEndpoint"),
                format!("missing while msiClientId is set; using {DEFAULT_MSI_ENDPOINT}"),
            );
        }
    }
    identity
}

/// Accepts `…/metadata/identity/oauth2/token` and `…/metadata/identity` (both appear in
/// the Microsoft documentation) and returns the full token URL.
fn normalize_endpoint(text: &str) -> Result<(String, Option<String>), String> {
    let url = Url::parse(text).map_err(|e| format!("{} is not a valid URL: {e}", quote(text)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "scheme must be \"http\" or \"https\", found {}",
            quote(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{} has no host", quote(text)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user information (…@) is not allowed".to_owned());
    }
    if url.query().is_some() {
        return Err(
            "query strings (?…) are not allowed; akvsync adds api-version and resource itself"
                .to_owned(),
        );
    }
    if url.fragment().is_some() {
        return Err("fragments (#…) are not allowed".to_owned());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let mut normalized = url.clone();
    let warning = if path.ends_with(TOKEN_PATH) {
        normalized.set_path(&path);
        None
    } else if path.ends_with(IDENTITY_PATH) {
        normalized.set_path(&format!("{path}/oauth2/token"));
        None
    } else {
        Some(format!(
            "path {} is neither {IDENTITY_PATH} nor {TOKEN_PATH}; used as given",
            quote(url.path())
        ))
    };
    Ok((normalized.to_string(), warning))
}

/// `msiClientId`: a client ID (GUID), or, as field reports show, an identity's resource ID.
fn parse_client_id(
    text: &str,
    path: &JsonPath,
    diags: &mut Diagnostics,
) -> Option<UserAssignedIdentity> {
    if text.is_empty() {
        diags.warn(path, "empty; the system-assigned identity is used");
        None
    } else if is_guid(text) {
        Some(UserAssignedIdentity::ClientId(text.to_ascii_lowercase()))
    } else if is_identity_resource_id(text) {
        diags.warn(
            path,
            "is an identity resource ID, not a client ID; it is sent as msi_res_id",
        );
        Some(UserAssignedIdentity::ResourceId(text.to_owned()))
    } else {
        diags.error(
            path,
            format!(
                "expected a client ID (a GUID such as \"c7373ae5-91c2-4165-8ab6-7381d6e75619\") \
                 or a user-assigned identity resource ID, found {}",
                quote(text)
            ),
        );
        None
    }
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `/subscriptions/<id>/resourcegroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`
fn is_identity_resource_id(text: &str) -> bool {
    let segments: Vec<&str> = text.split('/').collect();
    matches!(
        segments.as_slice(),
        ["", subscriptions, sub, resource_groups, rg, providers, namespace, kind, name]
            if subscriptions.eq_ignore_ascii_case("subscriptions")
                && resource_groups.eq_ignore_ascii_case("resourceGroups")
                && providers.eq_ignore_ascii_case("providers")
                && namespace.eq_ignore_ascii_case("Microsoft.ManagedIdentity")
                && kind.eq_ignore_ascii_case("userAssignedIdentities")
                && [sub, rg, name].iter().all(|s| !s.is_empty() && !s.chars().any(char::is_control))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_endpoint_forms_become_the_token_url() {
        for form in [
            "http://169.254.169.254/metadata/identity",
            "http://169.254.169.254/metadata/identity/",
            "http://169.254.169.254/metadata/identity/oauth2/token",
        ] {
            assert_eq!(
                normalize_endpoint(form).unwrap(),
                (DEFAULT_MSI_ENDPOINT.to_owned(), None)
            );
        }
        let arc = normalize_endpoint("http://localhost:40342/metadata/identity").unwrap();
        assert_eq!(
            arc.0,
            "http://localhost:40342/metadata/identity/oauth2/token"
        );
    }

    #[test]
    fn client_ids_and_resource_ids() {
        assert!(is_guid("c7373ae5-91c2-4165-8ab6-7381d6e75619"));
        assert!(!is_guid("c7373ae5-91c2-4165-8ab6-7381d6e7561"));
        assert!(is_identity_resource_id(
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
        ));
        assert!(!is_identity_resource_id(
            "/subscriptions/0000/resourceGroups/rg"
        ));
    }
}
