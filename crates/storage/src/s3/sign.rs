//! AWS Signature Version 4 for S3 requests: the canonical request, the string to sign and
//! the `Authorization` header, as pure functions of their inputs.
//!
//! It must not do I/O or read the clock: the caller passes the time, so the signatures in
//! AWS's documentation can be checked here byte for byte.

use ring::{digest, hmac};

/// Characters that need no percent-encoding in a canonical URI or query (RFC 3986
/// unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte but the unreserved ones (and `/` when `keep_slash`), as SigV4
/// requires (upper-case hex).
#[must_use]
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: pairs encoded, sorted by name then value, joined with `&`.
#[must_use]
pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-case hex SHA-256 of `data`.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// One request to sign.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `PUT`, `HEAD`, `DELETE`.
    pub method: &'a str,
    /// The path as sent, already encoded (see [`uri_encode`]).
    pub canonical_uri: &'a str,
    /// The query as sent, already canonical (see [`canonical_query`]).
    pub canonical_query: &'a str,
    /// Headers to sign, `host` and `x-amz-date` among them: names in lower case.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// Who signs, where and when.
#[derive(Debug)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The request time, `YYYYMMDDTHHMMSSZ` (the `x-amz-date` header's value).
    pub amz_date: &'a str,
}

impl Signer<'_> {
    /// The `Authorization` header's value for `req`.
    #[must_use]
    pub fn authorization(&self, req: &Request<'_>) -> String {
        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| {
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (k.to_ascii_lowercase(), v)
            })
            .collect();
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_headers = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            req.method,
            req.canonical_uri,
            req.canonical_query,
            canonical_headers,
            signed_headers,
            req.payload_sha256
        );
        let date = self.amz_date.get(..8).unwrap_or(self.amz_date);
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.amz_date,
            sha256_hex(canonical_request.as_bytes())
        );
        let k_date = hmac_sha256(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            date.as_bytes(),
        );
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, b"s3");
        let k_signing = hmac_sha256(&k_service, b"aws4_request");
        let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        )
    }
}

/// `YYYYMMDDTHHMMSSZ` for a time in seconds since the Unix epoch (UTC).
#[must_use]
pub fn amz_date(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of AWS's "Signature Calculations for the Authorization Header" page
    // (bucket examplebucket, 2013-05-24, the documentation's example key).
    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn signer() -> Signer<'static> {
        Signer {
            access_key_id: AKID,
            secret_access_key: SECRET,
            region: "us-east-1",
            amz_date: "20130524T000000Z",
        }
    }

    fn signature(auth: &str) -> &str {
        auth.rsplit("Signature=").next().unwrap_or_default()
    }

    #[test]
    fn get_object_with_range_matches_the_aws_example() {
        let auth = signer().authorization(&Request {
            method: "GET",
            canonical_uri: "/test.txt",
            canonical_query: "",
            headers: &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_sha256: EMPTY_SHA,
        });
        assert_eq!(
            signature(&auth),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
        ));
    }

    #[test]
    fn put_object_matches_the_aws_example() {
        let body_sha = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            body_sha,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let uri = format!("/{}", uri_encode("test$file.text", true));
        assert_eq!(uri, "/test%24file.text");
        let auth = signer().authorization(&Request {
            method: "PUT",
            canonical_uri: &uri,
            canonical_query: "",
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", &body_sha),
            ],
            payload_sha256: &body_sha,
        });
        assert_eq!(
            signature(&auth),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn list_objects_matches_the_aws_example() {
        let query = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let auth = signer().authorization(&Request {
            method: "GET",
            canonical_uri: "/",
            canonical_query: &query,
            headers: &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_SHA),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_sha256: EMPTY_SHA,
        });
        assert_eq!(
            signature(&auth),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn a_changed_input_changes_the_signature() {
        let req = |uri| Request {
            method: "GET",
            canonical_uri: uri,
            canonical_query: "",
            headers: &[("host", "h"), ("x-amz-date", "20130524T000000Z")],
            payload_sha256: EMPTY_SHA,
        };
        let a = signer().authorization(&req("/a"));
        assert_ne!(a, signer().authorization(&req("/b")));
        let other_region = Signer {
            region: "eu-west-1",
            ..signer()
        };
        assert_ne!(a, other_region.authorization(&req("/a")));
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a b/c~d_e.f-g", false), "a%20b%2Fc~d_e.f-g");
        assert_eq!(uri_encode("a b/c", true), "a%20b/c");
        assert_eq!(uri_encode("é+=", false), "%C3%A9%2B%3D");
        assert_eq!(
            canonical_query(&[("list-type", "2"), ("continuation-token", "a+b/c=")]),
            "continuation-token=a%2Bb%2Fc%3D&list-type=2"
        );
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        // A leap day and the last second of a year.
        assert_eq!(amz_date(951_782_400 + 3_661), "20000229T010101Z");
        assert_eq!(amz_date(1_798_761_599), "20261231T235959Z");
    }
}
