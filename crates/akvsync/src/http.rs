//! HTTP plumbing shared by the identity and vault clients: reading a response body under
//! a hard size cap, and the timeouts every request carries.

use std::time::Duration;

/// Connect timeout: a loopback or in-region endpoint connects in milliseconds; 10 s covers
/// a congested VM without letting a dead endpoint stall a poll.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout, body included: a slow-drip (slowloris) response is cut here
/// rather than holding a certificate's task forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read: a certificate secret is at most 25 KiB in Key Vault.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("reading the response body failed: {0}")]
    Transport(#[from] reqwest::Error),
}

/// Reads the body chunk by chunk and stops as soon as it passes `limit`, so a 1 GiB
/// response costs at most `limit` bytes of memory.
/// The buffer is zeroed when dropped: bodies carry tokens and private keys.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BodyError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    // Reserve what the server announced, so that growing does not leave copies behind.
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(announced as usize));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        if body.capacity() < body.len() + chunk.len() {
            let mut grown =
                zeroize::Zeroizing::new(Vec::with_capacity((body.len() + chunk.len()) * 2));
            grown.extend_from_slice(&body);
            body = grown;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
