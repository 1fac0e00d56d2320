//! Settings: reads the settings users deploy for the Microsoft Key Vault VM extensions
//! (both input forms, every schema variant) and validates them into one typed model.
//!
//! Entry points: [`load_file`] and [`parse_bytes`]. Everything returned by them has been
//! validated; errors and warnings name the JSON path they concern.

mod akvsync_section;
mod auth;
mod diag;
mod fields;
mod json;
mod model;
pub mod outputs;
pub mod render;
mod schema;
mod targets;
mod vault_url;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics};
pub use json::{MAX_DEPTH, MAX_SETTINGS_BYTES};
pub use model::*;
pub use targets::TEMP_PREFIX;
pub use vault_url::{Cloud, SecretUrl, UrlKind, parse as parse_secret_url, parse_vault_host};

/// Settings that passed validation, with the warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub settings: Settings,
    pub warnings: Vec<Diagnostic>,
}

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid settings: {}", summary(.0))]
    Invalid(Diagnostics),
}

fn summary(diags: &Diagnostics) -> String {
    match diags.errors.as_slice() {
        [only] => only.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        [] => "no details".to_owned(),
    }
}

/// Reads and validates a settings file, refusing files over [`MAX_SETTINGS_BYTES`]
/// without reading them whole.
pub fn load_file(path: &Path, platform: Platform) -> Result<Validated, SettingsError> {
    let io_error = |source| SettingsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_SETTINGS_BYTES as u64) as usize);
    file.take(MAX_SETTINGS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() > MAX_SETTINGS_BYTES {
        let size = usize::try_from(metadata.len())
            .unwrap_or(usize::MAX)
            .max(bytes.len());
        return Err(SettingsError::Invalid(root_error(
            json::JsonError::TooLarge { size },
        )));
    }
    parse_bytes(&bytes, platform)
}

/// Validates settings given as bytes (a file's content).
pub fn parse_bytes(bytes: &[u8], platform: Platform) -> Result<Validated, SettingsError> {
    let text = json::decode_text(bytes).map_err(|e| SettingsError::Invalid(root_error(e)))?;
    if text.trim().is_empty() {
        // The guest agent's empty `0.settings`: valid, nothing to do (SPEC §1.1).
        let mut diags = Diagnostics::default();
        diags.warn(
            &diag::JsonPath::root(),
            "the settings file is empty; nothing to observe",
        );
        return Ok(Validated {
            settings: Settings::empty(platform, None),
            warnings: diags.warnings,
        });
    }
    let document = json::parse(&text).map_err(|e| SettingsError::Invalid(root_error(e)))?;
    let mut diags = Diagnostics::default();
    let settings = schema::read_document(&document, platform, &mut diags);
    if diags.errors.is_empty() {
        Ok(Validated {
            settings,
            warnings: diags.warnings,
        })
    } else {
        Err(SettingsError::Invalid(diags))
    }
}

fn root_error(error: json::JsonError) -> Diagnostics {
    let mut diags = Diagnostics::default();
    diags.error(&diag::JsonPath::root(), error.to_string());
    diags
}
