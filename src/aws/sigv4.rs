//! AWS Signature Version 4 for the requests the layer sends (JSON APIs and S3): a canonical
//! request, the string to sign over it, and the signing key derived from the secret key for
//! one day, region and service. Written over `ring` (already in the build through rustls) rather than
//! taken from `aws-sigv4`, which would bring some fifty crates for these few lines.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

use super::credentials::Credentials;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// What SigV4 leaves unencoded: letters, digits and `-._~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same in a path, whose `/` separate segments.
const UNRESERVED_IN_PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// A request to sign. `headers` are the ones to sign besides `host` and `x-amz-date`
/// (lower-case names); `path` is as sent, its segments URI-encoded (`uri_encode_path`), and
/// `query` pairs are URI-encoded (`uri_encode`).
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The headers that sign `request` for `service` in `region` at `unix_seconds`: `x-amz-date`,
/// `x-amz-security-token` with temporary credentials, for S3 `x-amz-content-sha256` (the
/// body's hash, which S3 requires), all signed too, and `authorization`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    unix_seconds: u64,
) -> Vec<(&'static str, String)> {
    let amz_date = amz_date(unix_seconds);
    let day = &amz_date[..8];
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    headers.push(("host".into(), request.host.to_string()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    let mut added = vec![("x-amz-date", amz_date.clone())];
    if let Some(token) = credentials.session_token() {
        headers.push(("x-amz-security-token".into(), token.to_string()));
        added.push(("x-amz-security-token", token.to_string()));
    }
    let body_hash = hex_sha256(request.body);
    if service == "s3" {
        headers.push(("x-amz-content-sha256".into(), body_hash.clone()));
        added.push(("x-amz-content-sha256", body_hash.clone()));
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let path = canonical_path(request.path, service);
    let canonical = canonical_request(request, &path, &headers, &signed_headers, &body_hash);
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key(), day, region, service);
    let signature = hex(hmac::sign(&key, to_sign.as_bytes()).as_ref());
    added.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

fn canonical_request(
    request: &Request<'_>,
    path: &str,
    headers: &[(String, String)],
    signed: &str,
    body_hash: &str,
) -> String {
    let mut query = request.query.to_vec();
    query.sort();
    let query = query
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    format!(
        "{}\n{path}\n{query}\n{headers}\n{signed}\n{body_hash}",
        request.method
    )
}

/// The path as the canonical request holds it: S3 signs it as sent, other services sign its
/// segments encoded once more.
fn canonical_path(path: &str, service: &str) -> String {
    if service == "s3" {
        path.to_string()
    } else {
        uri_encode_path(path)
    }
}

/// `text` URI-encoded as SigV4 wants it: every byte but the unreserved ones as `%XX`.
pub fn uri_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

/// A path URI-encoded segment by segment: `uri_encode` keeping the `/`.
pub fn uri_encode_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, UNRESERVED_IN_PATH).to_string()
}

/// The key for one day, region and service: an HMAC chain from the secret key.
fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    for part in [day, region, service, "aws4_request"] {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    key
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(unix_seconds: u64) -> String {
    let (days, seconds) = (unix_seconds / 86_400, unix_seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite: its example credentials, scope and time.
    const EXAMPLE_TIME: u64 = 1_440_938_160; // 2015-08-30T12:36:00Z
    const PREFIX: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=";

    fn example() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            None,
        )
    }

    fn authorization(method: &str, query: &[(&str, &str)]) -> String {
        let request = Request {
            method,
            host: "example.amazonaws.com",
            path: "/",
            query,
            headers: &[],
            body: b"",
        };
        let headers = sign(&request, &example(), "us-east-1", "service", EXAMPLE_TIME);
        assert_eq!(headers[0], ("x-amz-date", "20150830T123600Z".to_string()));
        headers.last().unwrap().1.clone()
    }

    #[test]
    fn the_aws_test_suite_signatures() {
        let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert_eq!(authorization("GET", &[]), format!("{PREFIX}{sig}"));
        // get-vanilla-query-order-key-case: the query is sorted before signing.
        let query = [("Param2", "value2"), ("Param1", "value1")];
        let sig = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        assert_eq!(authorization("GET", &query), format!("{PREFIX}{sig}"));
        let sig = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
        assert_eq!(authorization("POST", &[]), format!("{PREFIX}{sig}"));
    }

    #[test]
    fn the_aws_test_suite_signing_key() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        );
        // The derived key is not readable from ring's Key: its HMAC of nothing is compared
        // with the HMAC under the published key bytes instead.
        let published = "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75";
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&published[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let expected = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        assert_eq!(
            hmac::sign(&key, b"").as_ref(),
            hmac::sign(&expected, b"").as_ref()
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let credentials = Credentials::new("ASIA".into(), "secret".into(), Some("token".into()));
        let request = Request {
            method: "POST",
            host: "127.0.0.1:5000",
            path: "/",
            query: &[],
            headers: &[("X-Amz-Target", "secretsmanager.GetSecretValue")],
            body: b"{}",
        };
        let headers = sign(
            &request,
            &credentials,
            "eu-west-1",
            "secretsmanager",
            EXAMPLE_TIME,
        );
        assert_eq!(headers[1], ("x-amz-security-token", "token".to_string()));
        let authorization = &headers[2].1;
        assert!(authorization.contains("/20150830/eu-west-1/secretsmanager/aws4_request"));
        assert!(authorization
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token;x-amz-target,"));
    }

    /// The "GET Object" example of the S3 SigV4 documentation (header-based authentication).
    #[test]
    fn the_s3_get_object_example() {
        let credentials = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            None,
        );
        let request = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("Range", "bytes=0-9")],
            body: b"",
        };
        let may_24_2013 = 1_369_353_600;
        let headers = sign(&request, &credentials, "us-east-1", "s3", may_24_2013);
        let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(headers[1], ("x-amz-content-sha256", empty_sha256.into()));
        let authorization = &headers[2].1;
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        ));
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        assert!(authorization.ends_with(&format!("Signature={sig}")));
    }

    #[test]
    fn s3_signs_the_path_as_sent_and_other_services_encode_it_again() {
        let sent = uri_encode_path("/a b");
        assert_eq!(sent, "/a%20b");
        assert_eq!(canonical_path(&sent, "s3"), "/a%20b");
        assert_eq!(canonical_path(&sent, "secretsmanager"), "/a%2520b");
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(uri_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(uri_encode("a b+c=d/é"), "a%20b%2Bc%3Dd%2F%C3%A9");
        assert_eq!(
            uri_encode_path("/dir/a b+c=d~é"),
            "/dir/a%20b%2Bc%3Dd~%C3%A9"
        );
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z"); // a leap day
        assert_eq!(amz_date(1_796_601_599), "20261206T235959Z");
        assert_eq!(amz_date(4_107_542_400), "21000301T000000Z"); // 2100 is not a leap year
    }
}
