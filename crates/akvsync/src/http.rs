//! HTTP plumbing shared by the identity and vault clients: reading a response body under
//! a hard size cap, the timeouts every request carries, and error messages that name
//! their cause (reset, timeout, refused) rather than only "error sending request".

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
    /// The body is longer than the limit it was read with.
    #[error("the response body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("reading the response body failed: {}", error_chain(.0))]
    Transport(#[from] reqwest::Error),
}

/// An error and its sources, joined with ": " (reqwest's own message is only the outermost
/// layer, e.g. "error sending request", while the cause sits in the sources). A source
/// whose text is already part of the message is skipped.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Reads the body chunk by chunk and stops as soon as it passes `limit`, so a 1 GiB
/// response costs at most `limit` bytes of memory.
/// The buffer is zeroed when dropped: bodies carry tokens and private keys.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<crate::wipe::SecretBytes, BodyError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    // Reserve what the server announced, so that growing does not leave copies behind.
    let mut body = crate::wipe::SecretBytes::with_capacity(announced as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_messages_carry_their_causes_once() {
        let error = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer(
                    "Connection reset by peer (os error 104)",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "error sending request: client error (Connect): Connection reset by peer (os error 104)"
        );
        let repeated = Layer("timed out", Some(Box::new(Layer("timed out", None))));
        assert_eq!(error_chain(&repeated), "timed out");
        assert_eq!(
            BodyError::TooLarge(65536).to_string(),
            "the response body exceeds 65536 bytes"
        );
    }
}
