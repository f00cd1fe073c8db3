//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64>` where the base64 is the
//! HMAC-SHA256, keyed with the secret's key, of `<webhook-id>.<webhook-timestamp>.<body>`.
//!
//! Invariant: the signed content is exactly the bytes sent (the body is signed as posted, not
//! re-serialized).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::settings::webhook::Secret;

/// The `webhook-signature` header's value.
pub fn signature(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.key()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its test vector).
    #[test]
    fn the_specification_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
