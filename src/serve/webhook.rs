//! Webhook signatures: GitHub's `X-Hub-Signature-256` and Standard Webhooks,
//! each compared in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery is refused (answered 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// A header by its (case-insensitive) name.
pub type Headers<'a> = &'a dyn Fn(&str) -> Option<String>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// GitHub: `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the raw body.
pub fn verify_github(secret: &[u8], headers: Headers<'_>, body: &[u8]) -> Result<(), Refused> {
    let header = headers("x-hub-signature-256")
        .ok_or_else(|| Refused("no `X-Hub-Signature-256` header".into()))?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| Refused("`X-Hub-Signature-256` does not start with `sha256=`".into()))?;
    let sig = decode_hex(hex).ok_or_else(|| Refused("`X-Hub-Signature-256` is not hex".into()))?;
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&sig)
        .map_err(|_| Refused("the signature does not match the body".into()))
}

/// The key of a Standard Webhooks secret: `whsec_BASE64` decoded, else the bytes as given.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Standard Webhooks: `webhook-signature` holds `v1,BASE64` entries (space
/// separated) of the HMAC-SHA256 of `ID.TIMESTAMP.BODY`; the timestamp (Unix
/// seconds) must be within `tolerance_ms` of `now_ms`. Returns the delivery id.
pub fn verify_standard(
    key: &[u8],
    headers: Headers<'_>,
    body: &[u8],
    now_ms: i64,
    tolerance_ms: u64,
) -> Result<String, Refused> {
    let get = |name: &str| headers(name).ok_or_else(|| Refused(format!("no `{name}` header")));
    let id = get("webhook-id")?;
    let stamp = get("webhook-timestamp")?;
    let secs: i64 = stamp
        .trim()
        .parse()
        .map_err(|_| Refused("`webhook-timestamp` is not a number of seconds".into()))?;
    let age = (now_ms / 1000 - secs).abs();
    if age.saturating_mul(1000) > tolerance_ms as i64 {
        return Err(Refused(format!(
            "`webhook-timestamp` is {age}s away from now, more than the tolerance of {}s",
            tolerance_ms / 1000
        )));
    }
    let signatures = get("webhook-signature")?;
    let expected = standard_mac(key, &id, stamp.trim(), body);
    let mut any = false;
    for entry in signatures.split_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        // Every entry is compared in full: which one matched is not timed.
        any |= constant_eq(&sig, &expected);
    }
    if any {
        Ok(id)
    } else {
        Err(Refused("no `v1` signature matches the body".into()))
    }
}

/// The HMAC-SHA256 of `ID.TIMESTAMP.BODY` (Standard Webhooks).
fn standard_mac(key: &[u8], id: &str, stamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(stamp.as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Signs `body` as Standard Webhooks does: the `webhook-signature` value `v1,BASE64`.
pub fn sign_standard(key: &[u8], id: &str, stamp: &str, body: &[u8]) -> String {
    let sig = standard_mac(key, id, stamp, body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

/// Equal in constant time for equal lengths (lengths are not secret).
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Signs `body` as GitHub does (for `flowc trigger fire` and tests): `sha256=HEX`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    let bytes = m.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_lowercase(), (*v).to_string()))
            .collect();
        move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn github_accepts_its_own_signature_and_refuses_a_changed_body() {
        let sig = sign_github(b"s3cret", b"{\"a\":1}");
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(verify_github(b"s3cret", &h, b"{\"a\":1}"), Ok(()));
        assert!(verify_github(b"s3cret", &h, b"{\"a\":2}").is_err());
        assert!(verify_github(b"other", &h, b"{\"a\":1}").is_err());
    }

    #[test]
    fn github_signature_matches_a_known_vector() {
        // HMAC-SHA256 of "Hello, World!" keyed "It's a Secret to Everybody",
        // the example in GitHub's documentation on validating deliveries.
        assert_eq!(
            sign_github(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn standard_checks_signature_and_timestamp() {
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = b"{\"test\": 2432232314}";
        let mut m = mac(&key);
        m.update(b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.");
        m.update(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
        let good = format!("v1,bogus v1,{sig}");
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", &good),
        ]);
        let now = 1_614_265_330_000;
        assert_eq!(
            verify_standard(&key, &h, body, now, 300_000).as_deref(),
            Ok("msg_p5jXN8AQM9LWM0D4loKWxJek")
        );
        assert!(verify_standard(&key, &h, b"{}", now, 300_000).is_err());
        let stale = verify_standard(&key, &h, body, now + 301_000, 300_000);
        assert!(stale.is_err_and(|r| r.0.contains("tolerance")));
    }
}
