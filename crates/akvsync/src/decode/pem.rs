//! PEM input: certificates and one private key in any order (Key Vault's own PEM secrets
//! put the key first), with a bound on the number of blocks.

use super::DecodeError;
use super::key::PrivateKey;

/// More blocks than any real chain has; bounds the work on hostile input.
const MAX_BLOCKS: usize = 64;

pub struct PemContents {
    pub certificates: Vec<Vec<u8>>,
    pub keys: Vec<PrivateKey>,
}

pub fn parse(text: &str) -> Result<PemContents, DecodeError> {
    let mut contents = PemContents {
        certificates: Vec::new(),
        keys: Vec::new(),
    };
    let mut rest = text;
    let mut blocks = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        blocks += 1;
        if blocks > MAX_BLOCKS {
            return Err(DecodeError::Pem(format!(
                "more than {MAX_BLOCKS} PEM blocks"
            )));
        }
        let block_and_after = &rest[start..];
        let label_end = block_and_after[11..]
            .find("-----")
            .ok_or_else(|| DecodeError::Pem("unterminated BEGIN line".to_owned()))?;
        let label = &block_and_after[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block_and_after
            .find(&end_marker)
            .ok_or_else(|| DecodeError::Pem(format!("no END line for {label}")))?;
        let block = &block_and_after[..end + end_marker.len()];
        rest = &block_and_after[end + end_marker.len()..];
        let (label, der) = pem_rfc7468::decode_vec(block.as_bytes())
            .map_err(|e| DecodeError::Pem(format!("{label}: {e}")))?;
        let der = zeroize::Zeroizing::new(der);
        match label {
            "CERTIFICATE" => contents.certificates.push(der.to_vec()),
            "PRIVATE KEY" => contents.keys.push(PrivateKey::from_pkcs8(&der)?),
            "RSA PRIVATE KEY" => contents.keys.push(PrivateKey::from_pkcs1(&der)?),
            "EC PRIVATE KEY" => contents.keys.push(PrivateKey::from_sec1(&der)?),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(DecodeError::Pem(
                    "encrypted private keys are not supported".to_owned(),
                ));
            }
            // EC PARAMETERS, trusted-certificate markers and the like carry nothing we need.
            _ => {}
        }
    }
    Ok(contents)
}
