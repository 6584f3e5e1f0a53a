//! Reading S3 objects for artifact references (`s3://bucket/key`): an object's head, the
//! objects under a prefix, and a download checked against the ETag the reference recorded.
//!
//! Requests are signed (`sigv4`) with the function role's credentials, fetched for each
//! operation since they may be temporary, and sent over the process's one HTTP client. The
//! endpoint follows the AWS SDKs' variables (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), so a
//! VPC endpoint or a test server can be named. Errors name the object and what to fix, never
//! a credential.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode, Url};

use super::credentials::{Credentials, Source};
use super::sigv4::{self, uri_encode, uri_encode_path};
use crate::api::transport;
use crate::artifact::hex;
use crate::error::Error;

/// Bounds the wait for an answer's headers, and for the whole of a HEAD or a listing page.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds the wait for each next piece of a download, however long the whole takes.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The most keys S3 returns in one listing page.
const PAGE_SIZE: usize = 1000;

/// S3 in one region, at AWS or at an endpoint the environment names, with the credentials the
/// environment gives.
pub struct Client {
    region: String,
    /// An endpoint named in the environment, addressed path-style; None for AWS's own.
    endpoint: Option<Url>,
    credentials: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    /// Without its quotes.
    pub etag: String,
    pub size: u64,
    /// None when the bucket does not keep versions.
    pub version_id: Option<String>,
    pub content_type: Option<String>,
}

/// An object of a listing, as ListObjectsV2 describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    /// Without its quotes.
    pub etag: String,
    pub size: u64,
}

/// One page of a ListObjectsV2 answer.
#[derive(Default)]
struct ListPage {
    contents: Vec<ObjectSummary>,
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

/// One request, but for the region it is sent to (a redirect may change it).
struct Call<'a> {
    method: Method,
    bucket: &'a str,
    /// The object's key, or "" for the bucket itself (a listing).
    key: &'a str,
    /// Values URI-encoded.
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    /// `s3://bucket/key`, as errors name what the request was for.
    name: String,
    /// What the function's role needs to be granted for it.
    grant: String,
}

impl Client {
    /// The region (`AWS_REGION`, else `AWS_DEFAULT_REGION`), the endpoint and where the
    /// credentials come from, read from `env` without any request.
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                Error::Usage(
                    "cannot read from S3: no AWS region (set AWS_REGION or AWS_DEFAULT_REGION)"
                        .into(),
                )
            })?;
        let endpoint = match var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")) {
            Some(text) => Some(Url::parse(&text).map_err(|e| {
                Error::Usage(format!(
                    "AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) {text:?} is not a URL: {e}"
                ))
            })?),
            None => None,
        };
        let credentials =
            Source::from_env(env).map_err(|e| Error::Auth(format!("cannot read from S3: {e}")))?;
        Ok(Self {
            region,
            endpoint,
            credentials,
        })
    }

    /// The object at `key` (of that version), or None when there is none: the key may then
    /// be a prefix.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectHead>, Error> {
        if key.is_empty() {
            return Ok(None);
        }
        let call = self.object_call(Method::HEAD, bucket, key, version_id);
        let credentials = self.credentials(&call.name).await?;
        let response = self.send(&credentials, &call).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            // A HEAD answer has no body, so no error code: the status tells.
            return Err(refusal(status, "", &call));
        }
        object_head(response.headers()).map(Some).ok_or_else(|| {
            Error::Comm(format!(
                "S3 answered HEAD {} without its ETag or size",
                call.name
            ))
        })
    }

    /// The objects whose keys start with `prefix`, at most `max_objects` of them: more is an
    /// error, so that a reference never silently leaves objects out.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_objects: usize,
    ) -> Result<Vec<ObjectSummary>, Error> {
        let mut call = Call {
            method: Method::GET,
            bucket,
            key: "",
            query: Vec::new(),
            headers: Vec::new(),
            name: s3_name(bucket, prefix),
            grant: format!("s3:ListBucket on {}", self.arn(bucket)),
        };
        let credentials = self.credentials(&call.name).await?;
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            // One more than allowed is enough to know there are too many.
            let wanted = (max_objects - objects.len())
                .saturating_add(1)
                .min(PAGE_SIZE);
            call.query = list_query(prefix, wanted, token.as_deref());
            let response = self.answer(&credentials, &call).await?;
            let body = within(REQUEST_TIMEOUT, response.bytes(), &call.name).await?;
            let page = parse_list_page(&body).ok_or_else(|| {
                Error::Comm(format!(
                    "S3 answered the listing of {} with something that is not a listing",
                    call.name
                ))
            })?;
            objects.extend(page.contents);
            if objects.len() > max_objects {
                return Err(Error::Usage(format!(
                    "{} holds more than {max_objects} objects (max_objects): reference a \
                     narrower prefix, or raise max_objects",
                    call.name
                )));
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated => token = Some(next),
                _ => return Ok(objects),
            }
        }
    }

    /// Downloads the object at `key` (of that version) to `dest`, and returns its size. With
    /// `expected_etag`, an object that changed since is an error. The bytes go to a file beside
    /// `dest`, renamed onto it once complete and checked: `dest` never holds a partial object.
    pub async fn download(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        expected_etag: Option<&str>,
        dest: &Path,
    ) -> Result<u64, Error> {
        if key.is_empty() {
            // A GET of the bucket itself would answer with a listing.
            return Err(Error::Usage(format!(
                "cannot download {}: no key",
                s3_name(bucket, key)
            )));
        }
        let mut call = self.object_call(Method::GET, bucket, key, version_id);
        if let Some(etag) = expected_etag {
            call.headers.push(("if-match", format!("\"{etag}\"")));
        }
        let credentials = self.credentials(&call.name).await?;
        let mut response = self.answer(&credentials, &call).await?;
        let etag = header(response.headers(), "etag").map(unquoted);
        if let Some(expected) = expected_etag {
            if etag.as_deref() != Some(expected) {
                return Err(changed(&call.name));
            }
        }
        let mut md5 = etag
            .as_deref()
            .filter(|etag| is_md5(etag) && !encrypted_with_a_key(response.headers()))
            .map(|etag| (etag.to_string(), Md5::new()));
        let write_error = |e| {
            Error::io(
                format!("cannot write {} ({})", dest.display(), call.name),
                e,
            )
        };
        let mut part = PartFile::create(dest).map_err(write_error)?;
        let mut size = 0u64;
        while let Some(chunk) = within(STALL_TIMEOUT, response.chunk(), &call.name).await? {
            // Local writes of a chunk at a time: too short to be worth a blocking thread.
            part.file.write_all(&chunk).map_err(write_error)?;
            if let Some((_, hasher)) = &mut md5 {
                hasher.update(&chunk);
            }
            size += chunk.len() as u64;
        }
        if let Some((etag, hasher)) = md5 {
            if hex(&hasher.finalize()) != etag {
                return Err(Error::Comm(format!(
                    "the bytes downloaded from {} do not match its ETag (their MD5): the \
                     transfer was corrupted, try again",
                    call.name
                )));
            }
        }
        part.rename_onto(dest).map_err(write_error)?;
        Ok(size)
    }

    fn object_call<'a>(
        &self,
        method: Method,
        bucket: &'a str,
        key: &'a str,
        version_id: Option<&str>,
    ) -> Call<'a> {
        let action = match version_id {
            Some(_) => "s3:GetObjectVersion",
            None => "s3:GetObject",
        };
        Call {
            method,
            bucket,
            key,
            query: version_id
                .map(|id| ("versionId", uri_encode(id)))
                .into_iter()
                .collect(),
            headers: Vec::new(),
            name: s3_name(bucket, key),
            grant: format!("{action} on {}/{key}", self.arn(bucket)),
        }
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, Error> {
        self.credentials
            .clone()
            .credentials()
            .await
            .map_err(|e| Error::Auth(format!("cannot read {name}: {e}")))
    }

    /// The successful answer to `call`; a refusal is an error saying what to fix.
    async fn answer(&self, credentials: &Credentials, call: &Call<'_>) -> Result<Response, Error> {
        let response = self.send(credentials, call).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = within(REQUEST_TIMEOUT, response.bytes(), &call.name)
            .await
            .unwrap_or_default();
        Err(refusal(status, &error_code(&body), call))
    }

    /// Sends `call` in the configured region, and once more in the bucket's own region when
    /// S3 answers that the bucket lives there.
    async fn send(&self, credentials: &Credentials, call: &Call<'_>) -> Result<Response, Error> {
        let response = self.send_in(&self.region, credentials, call).await?;
        match moved_to(response.status(), response.headers(), &self.region) {
            Some(region) => self.send_in(&region, credentials, call).await,
            None => Ok(response),
        }
    }

    async fn send_in(
        &self,
        region: &str,
        credentials: &Credentials,
        call: &Call<'_>,
    ) -> Result<Response, Error> {
        let url = self.url(region, call)?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let query: Vec<(&str, &str)> = call.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = sigv4::Request {
            method: call.method.as_str(),
            host: &host,
            path: url.path(),
            query: &query,
            headers: &headers,
            body: b"",
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = sigv4::sign(&request, credentials, region, "s3", now);
        let mut builder = transport::client()?.request(call.method.clone(), url);
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        for (name, value) in signature {
            builder = builder.header(name, value);
        }
        within(REQUEST_TIMEOUT, builder.send(), &call.name).await
    }

    /// Where `call` goes in `region`: path-style at a named endpoint; at AWS, the bucket in the
    /// host name when it can be one (TLS certificates do not cover names with dots).
    fn url(&self, region: &str, call: &Call<'_>) -> Result<Url, Error> {
        if call
            .key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            // A URL would resolve them, and name another object.
            return Err(Error::Usage(format!(
                "cannot read {}: keys with . or .. segments are not supported",
                call.name
            )));
        }
        let bucket = call.bucket;
        let domain = domain(region);
        let base = match &self.endpoint {
            Some(endpoint) => format!(
                "{}/{}",
                endpoint.as_str().trim_end_matches('/'),
                uri_encode(bucket)
            ),
            None if virtual_hosted(bucket) => format!("https://{bucket}.s3.{region}.{domain}"),
            None => format!("https://s3.{region}.{domain}/{}", uri_encode(bucket)),
        };
        let mut url = format!("{base}/{}", uri_encode_path(call.key));
        for (i, (name, value)) in call.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{name}={value}"));
        }
        Url::parse(&url).map_err(|e| {
            Error::Usage(format!(
                "cannot read {}: no valid URL for it in region {region:?} ({e})",
                call.name
            ))
        })
    }

    /// The bucket's ARN, in the partition of the client's region.
    fn arn(&self, bucket: &str) -> String {
        let partition = match &self.region {
            region if region.starts_with("cn-") => "aws-cn",
            region if region.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        format!("arn:{partition}:s3:::{bucket}")
    }
}

/// The query of one ListObjectsV2 page.
fn list_query(prefix: &str, max_keys: usize, token: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = vec![
        ("list-type", "2".to_string()),
        ("encoding-type", "url".to_string()),
        ("max-keys", max_keys.to_string()),
        ("prefix", uri_encode(prefix)),
    ];
    if let Some(token) = token {
        query.push(("continuation-token", uri_encode(token)));
    }
    query
}

fn s3_name(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

fn domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// Whether the bucket's name can be a host name label: 3 to 63 lower-case letters, digits and
/// hyphens, a letter or digit at each end.
fn virtual_hosted(bucket: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
}

/// The region S3 says the bucket lives in, when it refused a request sent to another one.
fn moved_to(status: StatusCode, headers: &HeaderMap, region: &str) -> Option<String> {
    let redirect = matches!(status.as_u16(), 301 | 307 | 400);
    header(headers, "x-amz-bucket-region").filter(|moved| redirect && moved != region)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

fn unquoted(etag: String) -> String {
    etag.trim_matches('"').to_string()
}

fn object_head(headers: &HeaderMap) -> Option<ObjectHead> {
    Some(ObjectHead {
        etag: unquoted(header(headers, "etag")?),
        // Not the body's length: a HEAD answer has none.
        size: header(headers, "content-length")?.parse().ok()?,
        version_id: header(headers, "x-amz-version-id").filter(|id| id != "null"),
        content_type: header(headers, "content-type"),
    })
}

/// Whether an ETag is the MD5 of the object's bytes: one of 32 hex digits (a multipart
/// upload's has a `-<parts>` suffix).
fn is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the object is encrypted with a KMS or customer key, whose ETags are not the MD5
/// of the bytes even for a single-part upload.
fn encrypted_with_a_key(headers: &HeaderMap) -> bool {
    header(headers, "x-amz-server-side-encryption").is_some_and(|sse| sse.starts_with("aws:kms"))
        || headers.contains_key("x-amz-server-side-encryption-customer-algorithm")
}

fn parse_list_page(body: &[u8]) -> Option<ListPage> {
    let mut page = ListPage::default();
    let mut object = ObjectSummary::default();
    // `url` when the keys are URL-encoded (as asked, so that any key fits in XML).
    let mut url_encoded = false;
    let mut complete = false;
    xml_elements(body, |path, text| {
        match path {
            "/ListBucketResult/Contents/Key" => object.key = text.to_string(),
            "/ListBucketResult/Contents/ETag" => object.etag = unquoted(text.to_string()),
            "/ListBucketResult/Contents/Size" => object.size = text.parse().ok()?,
            "/ListBucketResult/Contents" => page.contents.push(std::mem::take(&mut object)),
            "/ListBucketResult/IsTruncated" => page.is_truncated = text == "true",
            "/ListBucketResult/NextContinuationToken" => {
                page.next_continuation_token = Some(text.to_string())
            }
            "/ListBucketResult/EncodingType" => url_encoded = text == "url",
            "/ListBucketResult" => complete = true,
            _ => {}
        }
        Some(())
    })?;
    if !complete {
        return None;
    }
    if url_encoded {
        for object in &mut page.contents {
            object.key = url_decode(&object.key)?;
        }
    }
    Some(page)
}

/// A key as S3 URL-encodes it in a listing: `%XX` bytes, and `+` for a space.
fn url_decode(text: &str) -> Option<String> {
    let text = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&text)
        .decode_utf8()
        .ok()?;
    Some(decoded.into_owned())
}

fn error_code(body: &[u8]) -> String {
    let mut code = String::new();
    xml_elements(body, |path, text| {
        if path == "/Error/Code" {
            code = text.to_string();
        }
        Some(())
    });
    code
}

/// Calls `visit` with each element's path (`/ListBucketResult/Contents/Key`) and text, at
/// its end (the text is untrimmed: a key may start or end with spaces); None when `xml` is
/// not well-formed, or when `visit` returns None.
fn xml_elements(xml: &[u8], mut visit: impl FnMut(&str, &str) -> Option<()>) -> Option<()> {
    let mut reader = Reader::from_reader(xml);
    let (mut path, mut text) = (String::new(), String::new());
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                path.push('/');
                path.push_str(std::str::from_utf8(start.local_name().as_ref()).ok()?);
                text.clear();
            }
            Event::Text(part) => text.push_str(&part.xml10_content().ok()?),
            Event::CData(part) => text.push_str(&part.decode().ok()?),
            Event::GeneralRef(entity) => match entity.resolve_char_ref().ok()? {
                Some(c) => text.push(c),
                None => text.push_str(resolve_predefined_entity(&entity.decode().ok()?)?),
            },
            Event::End(_) => {
                visit(&path, &text)?;
                text.clear();
                path.truncate(path.rfind('/')?);
            }
            Event::Eof => return Some(()),
            _ => {}
        }
    }
}

/// The error for S3's refusal of `call`, from its error code ("" when the answer had none) or
/// else its status, saying what to fix.
fn refusal(status: StatusCode, code: &str, call: &Call<'_>) -> Error {
    let name = &call.name;
    match (code, status.as_u16()) {
        ("NoSuchKey", _) | ("", 404) => Error::Usage(format!("{name} does not exist")),
        ("NoSuchVersion", _) => Error::Usage(format!("{name}: that version does not exist")),
        ("NoSuchBucket", _) => Error::Usage(format!(
            "cannot read {name}: the bucket {} does not exist",
            call.bucket
        )),
        ("PreconditionFailed", _) | ("", 412) => changed(name),
        ("PermanentRedirect" | "AuthorizationHeaderMalformed", _) | ("", 301) => Error::Comm(
            format!("cannot read {name}: the bucket is in another region, which S3 did not name"),
        ),
        ("AccessDenied", _) => Error::Auth(format!(
            "cannot read {name}: access denied; grant the function's role {}",
            call.grant
        )),
        (
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired",
            _,
        ) => Error::Auth(format!(
            "cannot read {name}: S3 refused the credentials ({code}): they are wrong or expired"
        )),
        ("", 403) => Error::Auth(format!(
            "cannot read {name}: S3 answered 403 Forbidden: the credentials are wrong or \
             expired, or the function's role needs {} (without s3:ListBucket on the bucket, S3 \
             answers 403 for a key that does not exist too)",
            call.grant
        )),
        ("", _) => Error::Comm(format!("cannot read {name}: S3 answered HTTP {status}")),
        (code, _) => Error::Comm(format!(
            "cannot read {name}: S3 answered HTTP {status} ({code})"
        )),
    }
}

fn changed(name: &str) -> Error {
    Error::InvalidValue(format!(
        "{name} changed since it was referenced: its ETag is not the one recorded"
    ))
}

/// `future`'s result, or an error naming what it was for when it fails or takes longer than
/// `limit`.
async fn within<T>(
    limit: Duration,
    future: impl Future<Output = reqwest::Result<T>>,
    name: &str,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Error::Unavailable(format!(
            "cannot read {name}: S3 cannot be reached ({})",
            transport::error_chain(&err)
        ))),
        Err(_) => Err(Error::Unavailable(format!(
            "cannot read {name}: S3 did not answer within {} s",
            limit.as_secs()
        ))),
    }
}

/// A download's file beside its destination, removed unless it was renamed onto it (also
/// when the download fails or is cancelled half-way).
struct PartFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl PartFile {
    fn create(dest: &Path) -> io::Result<Self> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the destination is no file")
        })?;
        if let Some(dir) = dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("the OS random source");
        let path =
            dest.with_file_name(format!(".{}.{}.part", name.to_string_lossy(), hex(&random)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            path,
            file,
            renamed: false,
        })
    }

    fn rename_onto(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(vars: &[(&str, &str)]) -> Result<Client, Error> {
        let credentials = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret-key"),
        ];
        Client::from_env(&|name: &str| {
            vars.iter()
                .chain(&credentials)
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    fn object_url(client: &Client, bucket: &str, key: &str, version: Option<&str>) -> String {
        let call = client.object_call(Method::GET, bucket, key, version);
        client.url(&client.region, &call).unwrap().to_string()
    }

    #[test]
    fn the_region_comes_from_the_environment() {
        let err = client(&[]).err().unwrap().to_string();
        assert!(err.contains("set AWS_REGION"), "{err}");
        let fallback = client(&[("AWS_DEFAULT_REGION", "eu-west-1")]).unwrap();
        assert_eq!(fallback.region, "eu-west-1");
        let both = [
            ("AWS_REGION", "us-east-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ];
        assert_eq!(client(&both).unwrap().region, "us-east-2");
    }

    #[test]
    fn aws_buckets_are_addressed_virtual_hosted_when_their_name_can_be_a_host() {
        let aws = client(&[("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(
            object_url(&aws, "my-bucket", "dir/file.txt", None),
            "https://my-bucket.s3.eu-west-1.amazonaws.com/dir/file.txt"
        );
        // Dots (not covered by S3's certificate), upper case and underscores: path-style.
        for bucket in ["my.bucket", "My_Bucket", "-bucket", "ab"] {
            assert_eq!(
                object_url(&aws, bucket, "k", None),
                format!("https://s3.eu-west-1.amazonaws.com/{bucket}/k")
            );
        }
        let china = client(&[("AWS_REGION", "cn-north-1")]).unwrap();
        assert_eq!(
            object_url(&china, "b-1", "k", None),
            "https://b-1.s3.cn-north-1.amazonaws.com.cn/k"
        );
        assert_eq!(china.arn("b-1"), "arn:aws-cn:s3:::b-1");
    }

    #[test]
    fn a_named_endpoint_is_addressed_path_style() {
        let vars = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000/"),
        ];
        let local = client(&vars).unwrap();
        assert_eq!(
            object_url(&local, "my-bucket", "a/b", Some("v+1")),
            "http://127.0.0.1:5000/my-bucket/a/b?versionId=v%2B1"
        );
        let general = client(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://h"),
        ]);
        assert_eq!(
            object_url(&general.unwrap(), "b", "k", None),
            "http://h/b/k"
        );
        let bad = client(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_S3", "no url"),
        ]);
        assert!(bad.err().unwrap().to_string().contains("is not a URL"));
    }

    #[test]
    fn keys_are_uri_encoded_once_per_segment() {
        let aws = client(&[("AWS_REGION", "us-east-1")]).unwrap();
        let url = object_url(&aws, "b-1", "dir/a b+c=d~é(1).txt", None);
        assert_eq!(
            url,
            "https://b-1.s3.us-east-1.amazonaws.com/dir/a%20b%2Bc%3Dd~%C3%A9%281%29.txt"
        );
        // The URL keeps the path as encoded: it is what is signed.
        assert_eq!(
            Url::parse(&url).unwrap().path(),
            "/dir/a%20b%2Bc%3Dd~%C3%A9%281%29.txt"
        );
        let call = aws.object_call(Method::GET, "b-1", "dir/../secret", None);
        let err = aws.url("us-east-1", &call).unwrap_err().to_string();
        assert!(err.contains("s3://b-1/dir/../secret"), "{err}");
    }

    #[test]
    fn a_listing_asks_for_url_encoded_keys_a_page_at_a_time() {
        let query = list_query("dir/a b", 1000, Some("1/ab+c=="));
        assert_eq!(
            query,
            [
                ("list-type", "2".to_string()),
                ("encoding-type", "url".to_string()),
                ("max-keys", "1000".to_string()),
                ("prefix", "dir%2Fa%20b".to_string()),
                ("continuation-token", "1%2Fab%2Bc%3D%3D".to_string()),
            ]
        );
    }

    #[test]
    fn a_listing_page_is_parsed_with_its_keys_decoded() {
        let page = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>dir%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <Contents>
    <Key>dir%2Fa+b%2Bc%3D%C3%A9.txt</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;9e107d9d372bb6826bd81d3542a419d6&quot;</ETag><Size>43</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>dir%2Fbig</Key><ETag>"d41d8cd98f00b204e9800998ecf8427e-2"</ETag><Size>10485760</Size>
  </Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list_page(page).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert_eq!(
            page.contents,
            [
                ObjectSummary {
                    key: "dir/a b+c=é.txt".into(),
                    etag: "9e107d9d372bb6826bd81d3542a419d6".into(),
                    size: 43,
                },
                ObjectSummary {
                    key: "dir/big".into(),
                    etag: "d41d8cd98f00b204e9800998ecf8427e-2".into(),
                    size: 10_485_760,
                },
            ]
        );
        let last = b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents>\
            <Key> a+b&amp;c </Key><ETag>&#34;x&#34;</ETag><Size>0</Size></Contents>\
            </ListBucketResult>";
        let last = parse_list_page(last).unwrap();
        assert!(!last.is_truncated);
        // Not URL-encoded: taken as it is, spaces and all.
        assert_eq!(last.contents[0].key, " a+b&c ");
        assert_eq!(last.contents[0].etag, "x");
        let empty = parse_list_page(b"<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>");
        assert!(empty.unwrap().contents.is_empty());
        assert!(parse_list_page(b"<html>").is_none());
        assert!(parse_list_page(b"<Error><Code>AccessDenied</Code></Error>").is_none());
    }

    #[test]
    fn refusals_name_the_object_and_what_to_fix() {
        let aws = client(&[("AWS_REGION", "us-east-1")]).unwrap();
        let get = aws.object_call(Method::GET, "b-1", "dir/k", None);
        let answer = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>
<Key>dir/k</Key><RequestId>X</RequestId></Error>"#;
        assert_eq!(error_code(answer), "NoSuchKey");
        assert_eq!(error_code(b""), "");
        let message = |status: u16, code: &str, call: &Call<'_>| {
            refusal(StatusCode::from_u16(status).unwrap(), code, call).to_string()
        };
        assert_eq!(
            message(404, "NoSuchKey", &get),
            "s3://b-1/dir/k does not exist"
        );
        assert!(message(404, "NoSuchBucket", &get).contains("the bucket b-1 does not exist"));
        assert!(message(403, "AccessDenied", &get)
            .contains("grant the function's role s3:GetObject on arn:aws:s3:::b-1/dir/k"));
        let versioned = aws.object_call(Method::GET, "b-1", "dir/k", Some("v1"));
        assert!(message(403, "AccessDenied", &versioned).contains("s3:GetObjectVersion on"));
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        ] {
            let text = message(403, code, &get);
            assert!(
                text.contains("wrong or expired") && text.contains(code),
                "{text}"
            );
        }
        let head = message(403, "", &aws.object_call(Method::HEAD, "b-1", "k", None));
        assert!(
            head.contains("wrong or expired") && head.contains("s3:GetObject"),
            "{head}"
        );
        assert!(
            message(412, "PreconditionFailed", &get).contains("changed since it was referenced")
        );
        assert_eq!(
            message(500, "InternalError", &get),
            "cannot read s3://b-1/dir/k: S3 answered HTTP 500 Internal Server Error (InternalError)"
        );
    }

    #[test]
    fn a_bucket_in_another_region_is_asked_again_there() {
        let mut headers = HeaderMap::new();
        let moved = |status: u16, headers: &HeaderMap| {
            moved_to(StatusCode::from_u16(status).unwrap(), headers, "us-east-1")
        };
        assert_eq!(moved(301, &headers), None);
        headers.insert("x-amz-bucket-region", "eu-west-1".parse().unwrap());
        for status in [301, 307, 400] {
            assert_eq!(moved(status, &headers).as_deref(), Some("eu-west-1"));
        }
        assert_eq!(moved(200, &headers), None);
        assert_eq!(moved(403, &headers), None);
        headers.insert("x-amz-bucket-region", "us-east-1".parse().unwrap());
        assert_eq!(moved(301, &headers), None);
    }

    #[test]
    fn an_object_head_comes_from_the_answer_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "etag",
            "\"9e107d9d372bb6826bd81d3542a419d6\"".parse().unwrap(),
        );
        headers.insert("content-length", "43".parse().unwrap());
        headers.insert("x-amz-version-id", "null".parse().unwrap());
        let head = object_head(&headers).unwrap();
        assert_eq!(head.etag, "9e107d9d372bb6826bd81d3542a419d6");
        assert_eq!(
            (head.size, head.version_id, head.content_type),
            (43, None, None)
        );
        headers.insert(
            "x-amz-version-id",
            "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrH".parse().unwrap(),
        );
        headers.insert("content-type", "text/plain".parse().unwrap());
        let head = object_head(&headers).unwrap();
        assert_eq!(
            head.version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrH")
        );
        assert_eq!(head.content_type.as_deref(), Some("text/plain"));
        headers.remove("etag");
        assert_eq!(object_head(&headers), None);
    }

    #[test]
    fn only_plain_single_part_etags_are_checked_as_md5() {
        assert!(is_md5("9e107d9d372bb6826bd81d3542a419d6"));
        assert!(!is_md5("d41d8cd98f00b204e9800998ecf8427e-2"));
        let mut headers = HeaderMap::new();
        assert!(!encrypted_with_a_key(&headers));
        headers.insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
        assert!(!encrypted_with_a_key(&headers));
        headers.insert("x-amz-server-side-encryption", "aws:kms".parse().unwrap());
        assert!(encrypted_with_a_key(&headers));
    }

    #[tokio::test]
    async fn a_download_needs_a_key() {
        let aws = client(&[("AWS_REGION", "us-east-1")]).unwrap();
        let no_key = aws.download("b-1", "", None, None, Path::new("x")).await;
        assert_eq!(
            no_key.unwrap_err().to_string(),
            "cannot download s3://b-1/: no key"
        );
    }

    #[test]
    fn a_part_file_is_removed_unless_renamed_onto_its_destination() {
        let dir = std::env::temp_dir().join(format!("wandb-nexus-s3-part-{}", std::process::id()));
        let dest = dir.join("sub/file.bin");
        let part = PartFile::create(&dest).unwrap();
        let path = part.path.clone();
        assert_eq!(path.parent(), dest.parent());
        drop(part);
        assert!(!path.exists() && !dest.exists());
        let mut part = PartFile::create(&dest).unwrap();
        part.file.write_all(b"bytes").unwrap();
        part.rename_onto(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"bytes");
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Against an S3 API, run by hand: `S3_TEST_ENDPOINT=http://127.0.0.1:PORT
    /// AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... cargo test --lib
    /// aws::s3 -- --ignored`, with moto server checking signatures and IAM policies. The
    /// credentials may read the bucket `s3-test`, which holds `dir/a b+c=d~é.txt` (`hello`)
    /// and `many/0000` to `many/1000`, and not `s3-private`, which holds `k`.
    #[tokio::test]
    #[ignore]
    async fn against_an_s3_server() {
        let env = |name: &str| match name {
            "AWS_ENDPOINT_URL_S3" => std::env::var("S3_TEST_ENDPOINT").ok(),
            _ => std::env::var(name).ok(),
        };
        let s3 = Client::from_env(&env).unwrap();
        let key = "dir/a b+c=d~é.txt";
        let head = s3.head("s3-test", key, None).await.unwrap().unwrap();
        assert_eq!((head.size, head.version_id.as_deref()), (5, None));
        assert_eq!(s3.head("s3-test", "dir", None).await.unwrap(), None);

        let dir =
            std::env::temp_dir().join(format!("wandb-nexus-s3-download-{}", std::process::id()));
        let dest = dir.join("hello.txt");
        let size = s3.download("s3-test", key, None, Some(&head.etag), &dest);
        assert_eq!(size.await.unwrap(), 5);
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        let other_etag = Some("0123456789abcdef0123456789abcdef");
        let changed = s3
            .download("s3-test", key, None, other_etag, &dir.join("changed"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            changed.contains("changed since it was referenced"),
            "{changed}"
        );
        let missing = s3
            .download("s3-test", "nope", None, None, &dir.join("nope"))
            .await
            .unwrap_err();
        assert_eq!(missing.to_string(), "s3://s3-test/nope does not exist");
        let denied = s3
            .download("s3-private", "k", None, None, &dir.join("k"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            denied.contains("s3:GetObject on arn:aws:s3:::s3-private/k"),
            "{denied}"
        );
        // Only the one complete download is left.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();

        let listed = s3.list("s3-test", "dir/", 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), &listed[0].etag), (key, &head.etag));
        let many = s3.list("s3-test", "many/", 1001).await.unwrap();
        assert_eq!(many.len(), 1001);
        assert_eq!(many.last().unwrap().key, "many/1000");
        let too_many = s3
            .list("s3-test", "many/", 1000)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            too_many.contains("s3://s3-test/many/ holds more than 1000"),
            "{too_many}"
        );

        let wrong_key = |name: &str| match name {
            "AWS_SECRET_ACCESS_KEY" => Some("not-the-key".into()),
            _ => env(name),
        };
        let forged = Client::from_env(&wrong_key).unwrap();
        let refused = forged
            .list("s3-test", "dir/", 10)
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("SignatureDoesNotMatch"), "{refused}");
        let refused = forged
            .head("s3-test", key, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("403 Forbidden"), "{refused}");
    }
}
