//! The crate's error type. Messages name what is wrong and where, and say
//! whether a different password could help; they never contain key material
//! or passwords.

/// Printable form of OID content octets for error messages (here, not in `asn1`, so that the
/// reader can use this error type without a cycle between the two).
pub(crate) fn oid_to_string(content: &[u8]) -> String {
    match der::asn1::ObjectIdentifier::from_bytes(content) {
        Ok(oid) => oid.to_string(),
        Err(_) => {
            let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
            format!("<invalid OID {hex}>")
        }
    }
}

/// Why a PFX could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than [`crate::MAX_PFX_LEN`].
    #[error("PFX is {len} bytes, larger than the {max}-byte limit")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The DER/BER structure is not a valid PFX.
    #[error("malformed PFX: {what}: {detail}")]
    Malformed {
        /// Which part of the structure (e.g. `SafeBag.bagValue`).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// The PFX version is not 3.
    #[error("unsupported PFX version {0} (only version 3 exists)")]
    UnsupportedVersion(u64),

    /// An algorithm (encryption, key derivation, MAC digest) or content type
    /// this crate does not implement.
    #[error("unsupported {what}: {oid}")]
    UnsupportedAlgorithm {
        /// What the algorithm is used for (e.g. "bag encryption algorithm").
        what: &'static str,
        /// Its object identifier, dotted.
        oid: String,
    },

    /// A key-derivation or MAC iteration count above the work bound (SPEC §10).
    #[error("{what} iteration count {iterations} is above the limit of {max}")]
    IterationsTooHigh {
        /// Which iteration count ("MAC", "PKCS#12 PBE", "PBKDF2").
        what: &'static str,
        /// The count found (saturated at `u64::MAX`).
        iterations: u64,
        /// The limit, [`crate::MAX_ITERATIONS`].
        max: u32,
    },

    /// The whole file needs more key-derivation work than
    /// [`crate::MAX_TOTAL_ITERATIONS`] allows.
    #[error("PFX needs more than {max} key-derivation iterations in total")]
    TooMuchWork {
        /// The limit.
        max: u64,
    },

    /// The integrity MAC does not verify: the password is wrong (for an empty
    /// password both encodings were tried) or the file is corrupted.
    #[error("MAC verification failed: wrong password or corrupted PFX ({tried})")]
    MacMismatch {
        /// Which password encodings were tried.
        tried: &'static str,
    },

    /// Encrypted content does not decrypt to valid data: the password is wrong
    /// (only detectable this way for a PFX without MAC) or the data is corrupted.
    #[error("cannot decrypt {what}: wrong password or corrupted data")]
    Decryption {
        /// What was being decrypted.
        what: &'static str,
    },

    /// Invalid arguments to [`crate::encode`].
    #[error("cannot encode PFX: {0}")]
    InvalidInput(String),

    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(what: &'static str, oid_content: &[u8]) -> Self {
        Self::UnsupportedAlgorithm {
            what,
            oid: oid_to_string(oid_content),
        }
    }

    /// Whether another password might succeed (MAC or decryption failure).
    pub fn is_wrong_password(&self) -> bool {
        matches!(self, Self::MacMismatch { .. } | Self::Decryption { .. })
    }
}
