//! S3-compatible object storage (AWS S3, MinIO, Garage, Ceph RGW, Backblaze B2, …) over HTTPS,
//! signed with AWS Signature Version 4.
//!
//! Objects keep the local folder's layout under the prefix (`config`, `keys/<name>`,
//! `data/<first two characters>/<name>`, `index/…`, `snapshots/…`, `locks/…`), so a
//! repository copied between a folder and a bucket with any sync tool stays a repository.
//! Writes are conditional (`If-None-Match: *`), so a name that exists is never replaced;
//! every body is signed with its SHA-256, so the server refuses one damaged on the way, and
//! every acknowledged write is checked with a `HEAD` (present, with its size) before the
//! write returns. Transient failures (connection errors, 5xx, 429) are retried with backoff.
//!
//! What it must not do: print a secret (credentials are redacted from `Debug`, and never
//! part of a URL or an error), or report success for a write the server did not confirm.

mod sign;
mod xml;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode};

use crate::{Kind, ObjectInfo, Result, Storage, StorageError, check_name};

/// Attempts per request before a transient failure is reported.
const ATTEMPTS: u32 = 5;
/// Objects listed per page (the S3 maximum).
const PAGE_KEYS: &str = "1000";
/// Whole-object reads in flight at once in [`Storage::read_many`].
const READ_MANY_CONCURRENCY: usize = 16;
/// Bodies at least this large are hashed on the blocking pool, not on the runtime.
const HASH_OFF_RUNTIME_BYTES: usize = 1 << 20;

/// Access keys. `Debug` shows only the access key id.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where and how to reach a bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http(s)://host[:port]` of the service.
    pub endpoint: reqwest::Url,
    /// The signing region (`us-east-1` for most self-hosted servers).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket, without slashes at its ends
    /// (empty: the bucket's root).
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`, what self-hosted servers expect) rather
    /// than virtual-hosted (`bucket.endpoint/key`, AWS's preference).
    pub path_style: bool,
    /// The keys.
    pub credentials: Credentials,
}

impl S3Settings {
    /// Settings from the standard AWS variables, as given by `var`:
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (required), `AWS_SESSION_TOKEN`,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`), `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL` (default AWS's regional endpoint), and `STRONGROOM_S3_PATH_STYLE`
    /// (`true`/`false`; default: path-style with an endpoint given, virtual-hosted on AWS).
    ///
    /// # Errors
    /// [`StorageError::Settings`] naming the variable that is missing or wrong.
    pub fn from_env(
        bucket: &str,
        prefix: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Settings> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let required = |name: &str| {
            get(name).ok_or_else(|| {
                StorageError::Settings(format!(
                    "{name} is not set: an s3:// repository takes its credentials from \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ))
            })
        };
        let credentials = Credentials {
            access_key_id: required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
            session_token: get("AWS_SESSION_TOKEN"),
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        if !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StorageError::Settings(format!(
                "AWS_REGION {region:?} is not a region name (such as us-east-1)"
            )));
        }
        let (endpoint, custom) = match get("AWS_ENDPOINT_URL_S3")
            .map(|e| ("AWS_ENDPOINT_URL_S3", e))
            .or_else(|| get("AWS_ENDPOINT_URL").map(|e| ("AWS_ENDPOINT_URL", e)))
        {
            Some((name, url)) => (parse_endpoint(name, url.trim())?, true),
            None => (
                parse_endpoint("AWS_REGION", &format!("https://s3.{region}.amazonaws.com"))?,
                false,
            ),
        };
        let path_style = match get("STRONGROOM_S3_PATH_STYLE").as_deref().map(str::trim) {
            None => custom || bucket.contains('.'),
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(StorageError::Settings(format!(
                    "STRONGROOM_S3_PATH_STYLE is {other:?}; give true or false"
                )));
            }
        };
        S3Settings {
            endpoint,
            region,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            path_style,
            credentials,
        }
        .checked()
    }

    /// Checks the bucket name and the prefix.
    fn checked(self) -> Result<S3Settings> {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(StorageError::Settings(format!(
                "bucket name {:?}: 3 to 63 lower-case letters, digits, '-' or '.'",
                self.bucket
            )));
        }
        if self.prefix.split('/').any(|p| p == "." || p == "..")
            || self.prefix.contains("//")
            || self.prefix.chars().any(char::is_control)
        {
            return Err(StorageError::Settings(format!(
                "key prefix {:?}: no empty, '.' or '..' parts",
                self.prefix
            )));
        }
        Ok(self)
    }
}

fn parse_endpoint(name: &str, url: &str) -> Result<reqwest::Url> {
    let bad = |why: &str| {
        StorageError::Settings(format!(
            "{name} {url:?} {why}; give one such as https://s3.example.org or http://127.0.0.1:9000"
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("is not http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "holds credentials (give them in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
        ));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("has a path or query (give the service's root)"));
    }
    Ok(parsed)
}

/// A repository in an S3 bucket (see the module's documentation).
#[derive(Debug, Clone)]
pub struct S3Storage {
    settings: S3Settings,
    client: reqwest::Client,
    /// `scheme://host[:port]` requests go to.
    origin: String,
    /// The `Host` header's value (signed).
    host: String,
    /// The encoded path before a key: `/bucket/` (path style) or `/`.
    base_path: String,
}

/// One request: what is sent, before signing.
struct Call<'a> {
    method: Method,
    /// The key, or "" for the bucket itself.
    key: &'a str,
    query: &'a [(&'a str, &'a str)],
    headers: &'a [(&'static str, String)],
    body: Bytes,
    /// Hex SHA-256 of `body`.
    body_sha256: &'a str,
    /// What is being done, for errors: "reading data/ab/abcd…".
    what: &'a str,
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
    /// How many attempts were sent (more than one: an earlier one may have taken effect).
    attempts: u32,
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Storage {
    /// A store for `settings`.
    ///
    /// # Errors
    /// [`StorageError::Settings`] when the HTTP client cannot be built (no TLS roots).
    pub fn new(settings: S3Settings) -> Result<S3Storage> {
        let settings = settings.checked()?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30))
            // A signed request is for one host: a redirect is an error to show, not follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StorageError::Settings(format!("building the HTTP client: {e}")))?;
        let ep = &settings.endpoint;
        let host_port = match ep.port() {
            Some(port) => format!("{}:{port}", ep.host_str().unwrap_or_default()),
            None => ep.host_str().unwrap_or_default().to_owned(),
        };
        let (host, base_path) = if settings.path_style {
            (
                host_port,
                format!("/{}/", sign::uri_encode(&settings.bucket, false)),
            )
        } else {
            (format!("{}.{host_port}", settings.bucket), "/".to_owned())
        };
        let origin = format!("{}://{host}", ep.scheme());
        Ok(S3Storage {
            settings,
            client,
            origin,
            host,
            base_path,
        })
    }

    /// The key of an object: the prefix, then the local folder's layout.
    fn key(&self, kind: Kind, name: &str) -> String {
        let rel = match kind {
            Kind::Config => name.to_owned(),
            Kind::Pack => format!("{}/{}/{name}", kind.dir(), name.get(..2).unwrap_or(name)),
            _ => format!("{}/{name}", kind.dir()),
        };
        format!("{}{rel}", self.key_prefix())
    }

    /// The prefix with its trailing slash, or "".
    fn key_prefix(&self) -> String {
        if self.settings.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.settings.prefix)
        }
    }

    /// Sends `call`, retrying transient failures; returns the answer of the last attempt.
    async fn send(&self, call: &Call<'_>) -> Result<Answer> {
        let path = format!("{}{}", self.base_path, sign::uri_encode(call.key, true));
        let query = sign::canonical_query(call.query);
        let url = if query.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query}", self.origin)
        };
        let mut last_error = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let amz_date = sign::amz_date(now);
            let creds = &self.settings.credentials;
            let mut headers: Vec<(&str, &str)> = vec![
                ("host", &self.host),
                ("x-amz-content-sha256", call.body_sha256),
                ("x-amz-date", &amz_date),
            ];
            if let Some(token) = &creds.session_token {
                headers.push(("x-amz-security-token", token));
            }
            headers.extend(call.headers.iter().map(|(k, v)| (*k, v.as_str())));
            let authorization = sign::Signer {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                region: &self.settings.region,
                amz_date: &amz_date,
            }
            .authorization(&sign::Request {
                method: call.method.as_str(),
                canonical_uri: &path,
                canonical_query: &query,
                headers: &headers,
                payload_sha256: call.body_sha256,
            });
            let mut request = self
                .client
                .request(call.method.clone(), &url)
                .header("authorization", authorization);
            for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                request = request.header(*k, *v);
            }
            if call.method == Method::PUT {
                request = request.body(call.body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => Err(describe(&e)),
                    }
                }
                Err(e) => Err(describe(&e)),
            };
            match outcome {
                Ok((status, headers, body)) => {
                    let transient = status.is_server_error()
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || (status == StatusCode::BAD_REQUEST
                            && xml::error_body(&body).code == "RequestTimeout");
                    if transient && attempt + 1 < ATTEMPTS {
                        last_error = format!("HTTP {status}");
                        continue;
                    }
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                        attempts: attempt + 1,
                    });
                }
                Err(e) => last_error = e,
            }
        }
        Err(self.remote(
            call.what,
            format!("{last_error} (after {ATTEMPTS} attempts)"),
        ))
    }

    /// A request without a body.
    async fn bodiless(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        what: &str,
    ) -> Result<Answer> {
        self.send(&Call {
            method,
            key,
            query,
            headers,
            body: Bytes::new(),
            body_sha256: EMPTY_SHA256,
            what,
        })
        .await
    }

    /// An error of the store while doing `what`, naming where.
    fn remote(&self, what: &str, detail: impl Into<String>) -> StorageError {
        StorageError::Remote {
            context: format!("{what} ({})", self.location()),
            detail: detail.into(),
        }
    }

    /// The error for an answer that is not one the caller expected.
    fn unexpected(&self, what: &str, answer: &Answer) -> StorageError {
        let body = xml::error_body(&answer.body);
        // AWS names the bucket's region in a header (a HEAD's answer has no body to read).
        let bucket_region = answer
            .headers
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .filter(|r| *r != self.settings.region);
        let hint = match (bucket_region, answer.status.as_u16(), body.code.as_str()) {
            (Some(r), _, _) => format!(
                " (bucket {} is in region {r}, not {}: set AWS_REGION={r})",
                self.settings.bucket, self.settings.region
            ),
            (_, _, "NoSuchBucket") => format!(
                " (bucket {} does not exist: `strongroom init` creates it)",
                self.settings.bucket
            ),
            (_, _, "SignatureDoesNotMatch" | "InvalidAccessKeyId") | (_, 401, _) => {
                " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION)".to_owned()
            }
            (_, 403, _) => " (the credentials lack permission for this bucket)".to_owned(),
            (_, 301 | 307 | 400, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                " (the bucket is in another region: set AWS_REGION)".to_owned()
            }
            _ => String::new(),
        };
        let mut detail = match (body.code.is_empty(), body.message.is_empty()) {
            (true, _) => format!("HTTP {}{hint}", answer.status),
            (false, true) => format!("HTTP {}: {}{hint}", answer.status, body.code),
            (false, false) => format!(
                "HTTP {}: {}: {}{hint}",
                answer.status, body.code, body.message
            ),
        };
        if answer.attempts > 1 {
            detail.push_str(&format!(" (after {} attempts)", answer.attempts));
        }
        self.remote(what, detail)
    }

    /// The size of an object, or `None` when it does not exist.
    async fn head(&self, key: &str, what: &str) -> Result<Option<u64>> {
        let answer = self.bodiless(Method::HEAD, key, &[], &[], what).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => content_length(&answer.headers)
                .map(Some)
                .ok_or_else(|| self.remote(what, "the answer has no Content-Length")),
            _ => Err(self.unexpected(what, &answer)),
        }
    }

    /// The objects under `prefix` (whole keys), every page; with `delimiter`, only those
    /// directly under it.
    async fn list_keys(
        &self,
        prefix: &str,
        delimiter: bool,
        what: &str,
    ) -> Result<Vec<xml::Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![
                ("list-type", "2"),
                ("prefix", prefix),
                ("max-keys", PAGE_KEYS),
            ];
            if delimiter {
                query.push(("delimiter", "/"));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let answer = self.bodiless(Method::GET, "", &query, &[], what).await?;
            if !answer.status.is_success() {
                return Err(self.unexpected(what, &answer));
            }
            let page = xml::list_page(&String::from_utf8_lossy(&answer.body))
                .map_err(|e| self.remote(what, format!("unreadable listing: {e}")))?;
            out.extend(page.objects);
            match page.next_token {
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(self.remote(what, "the listing repeats its continuation token"));
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Whether the bucket exists (and the credentials reach it).
    async fn bucket_exists(&self) -> Result<bool> {
        let what = format!("checking bucket {}", self.settings.bucket);
        let answer = self.bodiless(Method::HEAD, "", &[], &[], &what).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&what, &answer)),
        }
    }
}

/// The wait before attempt `attempt` (1-based): 0.2 s doubling, at most 5 s, with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(5)) / 2;
    let mut jitter = [0u8; 2];
    let jitter = if getrandom::fill(&mut jitter).is_ok() {
        u64::from(u16::from_le_bytes(jitter)) % (base / 2 + 1)
    } else {
        0
    };
    Duration::from_millis((base + jitter).min(5_000))
}

/// A transport error with its causes (reqwest's own message says little).
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A 404 for the key, not for the bucket.
fn key_missing(answer: &Answer) -> bool {
    answer.status == StatusCode::NOT_FOUND && xml::error_body(&answer.body).code != "NoSuchBucket"
}

fn content_length(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The total size in a `Content-Range: bytes a-b/total` (or `bytes */total`) header.
fn content_range_total(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit('/').next()?.trim().parse().ok()
}

#[async_trait]
impl Storage for S3Storage {
    fn location(&self) -> String {
        let s = &self.settings;
        let prefix = if s.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", s.prefix)
        };
        format!("s3://{}{prefix} ({})", s.bucket, self.origin)
    }

    fn requests_are_costly(&self) -> bool {
        true
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        let root = self.key_prefix();
        let what = format!("listing {kind:?} objects");
        let (prefix, delimiter) = match kind {
            Kind::Config => (root.clone(), true),
            _ => (format!("{root}{}/", kind.dir()), false),
        };
        let mut out: Vec<ObjectInfo> = self
            .list_keys(&prefix, delimiter, &what)
            .await?
            .into_iter()
            .filter_map(|o| {
                let rel = o.key.strip_prefix(&prefix)?;
                let name = rel.rsplit('/').next()?;
                // Only what this layout would have written: anything else (a folder
                // marker, a stray upload) is not an object of the repository.
                (check_name(name).is_ok() && self.key(kind, name) == o.key).then(|| ObjectInfo {
                    name: name.to_owned(),
                    size: o.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        check_name(name)?;
        let key = self.key(kind, name);
        let what = format!("reading {key}");
        let answer = self.bodiless(Method::GET, &key, &[], &[], &what).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body),
            _ if key_missing(&answer) => Err(StorageError::NotFound {
                kind,
                name: name.to_owned(),
            }),
            _ => Err(self.unexpected(&what, &answer)),
        }
    }

    async fn read_many(&self, kind: Kind, names: &[String]) -> Vec<Result<Bytes>> {
        let reads: Vec<_> = names.iter().map(|name| self.read(kind, name)).collect();
        futures::stream::iter(reads)
            .buffered(READ_MANY_CONCURRENCY)
            .collect()
            .await
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        check_name(name)?;
        let key = self.key(kind, name);
        let what = format!("reading {key} at {offset}+{length}");
        let out_of_range = |size| StorageError::OutOfRange {
            kind,
            name: name.to_owned(),
            offset,
            length,
            size,
        };
        let not_found = || StorageError::NotFound {
            kind,
            name: name.to_owned(),
        };
        let end = offset.checked_add(length);
        if length == 0 || end.is_none() {
            let size = self.head(&key, &what).await?.ok_or_else(not_found)?;
            return match end {
                Some(end) if end <= size => Ok(Bytes::new()),
                _ => Err(out_of_range(size)),
            };
        }
        let last = offset + length - 1;
        let range = [("range", format!("bytes={offset}-{last}"))];
        let answer = self.bodiless(Method::GET, &key, &[], &range, &what).await?;
        let body = match answer.status {
            StatusCode::PARTIAL_CONTENT => answer.body,
            // A server that ignores ranges sends the whole object.
            StatusCode::OK => {
                let size = answer.body.len() as u64;
                if offset + length > size {
                    return Err(out_of_range(size));
                }
                answer
                    .body
                    .slice(offset as usize..(offset + length) as usize)
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = match content_range_total(&answer.headers) {
                    Some(size) => size,
                    None => self.head(&key, &what).await?.ok_or_else(not_found)?,
                };
                return Err(out_of_range(size));
            }
            _ if key_missing(&answer) => return Err(not_found()),
            _ => return Err(self.unexpected(&what, &answer)),
        };
        if body.len() as u64 == length {
            return Ok(body);
        }
        // Fewer bytes: the range ran past the end.
        let size = content_range_total(&answer.headers).unwrap_or(offset + body.len() as u64);
        Err(out_of_range(size))
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        check_name(name)?;
        let key = self.key(kind, name);
        let what = format!("writing {key}");
        let sha = if data.len() >= HASH_OFF_RUNTIME_BYTES {
            let d = data.clone();
            tokio::task::spawn_blocking(move || sign::sha256_hex(&d))
                .await
                .map_err(|e| self.remote(&what, format!("hashing the body failed: {e}")))?
        } else {
            sign::sha256_hex(&data)
        };
        let answer = self
            .send(&Call {
                method: Method::PUT,
                key: &key,
                query: &[],
                headers: &[("if-none-match", "*".to_owned())],
                body: data.clone(),
                body_sha256: &sha,
                what: &what,
            })
            .await?;
        match answer.status {
            // An acknowledgement is checked: the object must be there, whole. A server (or a
            // proxy) that answers 200 for a write it lost or cut short is caught here, before
            // anything that refers to the object is written.
            s if s.is_success() => match self.head(&key, &what).await? {
                Some(size) if size == data.len() as u64 => Ok(()),
                found => Err(self.remote(
                    &what,
                    format!(
                        "the server acknowledged the write of {} bytes but {}",
                        data.len(),
                        match found {
                            Some(size) => format!("holds {size} bytes"),
                            None => "does not have the object".to_owned(),
                        }
                    ),
                )),
            },
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => {
                // After a retry the object may be our own first attempt, which landed
                // although its answer was lost: the same bytes mean the write is done.
                if answer.attempts > 1
                    && let Ok(existing) = self.read(kind, name).await
                    && existing == data
                {
                    return Ok(());
                }
                if answer.status == StatusCode::CONFLICT
                    && xml::error_body(&answer.body).code != "ConditionalRequestConflict"
                {
                    return Err(self.unexpected(&what, &answer));
                }
                Err(StorageError::AlreadyExists {
                    kind,
                    name: name.to_owned(),
                })
            }
            _ => Err(self.unexpected(&what, &answer)),
        }
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        check_name(name)?;
        let key = self.key(kind, name);
        let what = format!("deleting {key}");
        // S3 answers a delete of a missing key with success; the contract says NotFound.
        if self.head(&key, &what).await?.is_none() {
            return Err(StorageError::NotFound {
                kind,
                name: name.to_owned(),
            });
        }
        let answer = self.bodiless(Method::DELETE, &key, &[], &[], &what).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.unexpected(&what, &answer))
        }
    }

    async fn create(&self) -> Result<()> {
        if !self.bucket_exists().await? {
            let what = format!("creating bucket {}", self.settings.bucket);
            let body = if self.settings.region == "us-east-1" {
                Bytes::new()
            } else {
                Bytes::from(format!(
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                    self.settings.region
                ))
            };
            let sha = sign::sha256_hex(&body);
            let answer = self
                .send(&Call {
                    method: Method::PUT,
                    key: "",
                    query: &[],
                    headers: &[],
                    body,
                    body_sha256: &sha,
                    what: &what,
                })
                .await?;
            let code = xml::error_body(&answer.body).code;
            // Another process may have created it meanwhile.
            if !answer.status.is_success() && code != "BucketAlreadyOwnedByYou" {
                return Err(self.unexpected(&what, &answer));
            }
        }
        let key = self.key(Kind::Config, "config");
        if self
            .head(&key, "checking for a repository")
            .await?
            .is_some()
        {
            return Err(StorageError::AlreadyExists {
                kind: Kind::Config,
                name: "config".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "very secret"),
    ];

    #[test]
    fn settings_come_from_the_standard_variables() {
        let s = S3Settings::from_env("backups", "/clinic/repo/", env(&KEYS)).unwrap();
        assert_eq!(s.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert_eq!(
            (s.region.as_str(), s.prefix.as_str()),
            ("us-east-1", "clinic/repo")
        );
        assert!(!s.path_style, "AWS: virtual-hosted");
        let mut vars = KEYS.to_vec();
        vars.extend([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_DEFAULT_REGION", "garage"),
        ]);
        let s = S3Settings::from_env("backups", "", env(&vars)).unwrap();
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(s.region, "garage");
        assert!(s.path_style, "a custom endpoint: path-style");
        vars.push(("STRONGROOM_S3_PATH_STYLE", "false"));
        assert!(
            !S3Settings::from_env("backups", "", env(&vars))
                .unwrap()
                .path_style
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("very secret"), "{debug}");
        assert!(debug.contains("AKID"));
    }

    #[test]
    fn bad_settings_name_what_to_fix() {
        let err = |bucket: &str, prefix: &str, vars: &[(&str, &str)]| {
            S3Settings::from_env(bucket, prefix, env(vars))
                .unwrap_err()
                .to_string()
        };
        assert!(err("b-1", "", &KEYS[..1]).contains("AWS_SECRET_ACCESS_KEY is not set"));
        assert!(err("b-1", "", &[]).contains("AWS_ACCESS_KEY_ID is not set"));
        let with = |extra: (&'static str, &'static str)| {
            let mut v = KEYS.to_vec();
            v.push(extra);
            v
        };
        for (var, value, says) in [
            ("AWS_ENDPOINT_URL", "ftp://h", "not http"),
            ("AWS_ENDPOINT_URL", "http://u:p@h", "holds credentials"),
            ("AWS_ENDPOINT_URL", "http://h/bucket", "has a path"),
            ("AWS_ENDPOINT_URL", "not a url", "not a URL"),
            ("AWS_REGION", "us east", "not a region"),
            ("STRONGROOM_S3_PATH_STYLE", "maybe", "give true or false"),
        ] {
            let e = err("bucket", "", &with((var, value)));
            assert!(e.contains(var) && e.contains(says), "{var}={value}: {e}");
        }
        assert!(err("Bad_Bucket", "", &KEYS).contains("bucket name"));
        assert!(err("bucket", "a/../b", &KEYS).contains("prefix"));
        assert!(err("bucket", "a//b", &KEYS).contains("prefix"));
    }

    fn store(path_style: bool, prefix: &str) -> S3Storage {
        let mut vars = KEYS.to_vec();
        vars.push(("AWS_ENDPOINT_URL", "https://objects.example.org:8443"));
        let mut s = S3Settings::from_env("clinic", prefix, env(&vars)).unwrap();
        s.path_style = path_style;
        S3Storage::new(s).unwrap()
    }

    #[test]
    fn keys_follow_the_local_layout_under_the_prefix() {
        let s = store(true, "strongroom/main");
        assert_eq!(s.key(Kind::Config, "config"), "strongroom/main/config");
        assert_eq!(
            s.key(Kind::Pack, "abcdef"),
            "strongroom/main/data/ab/abcdef"
        );
        assert_eq!(s.key(Kind::Pack, "a"), "strongroom/main/data/a/a");
        assert_eq!(s.key(Kind::Snapshot, "s1"), "strongroom/main/snapshots/s1");
        assert_eq!(s.key(Kind::Lock, "l"), "strongroom/main/locks/l");
        let root = store(true, "");
        assert_eq!(root.key(Kind::Key, "k"), "keys/k");
        assert_eq!(root.key(Kind::Config, "config"), "config");
    }

    #[test]
    fn addressing_style_sets_host_and_path() {
        let path = store(true, "p");
        assert_eq!(
            (
                path.origin.as_str(),
                path.host.as_str(),
                path.base_path.as_str()
            ),
            (
                "https://objects.example.org:8443",
                "objects.example.org:8443",
                "/clinic/"
            )
        );
        let virt = store(false, "p");
        assert_eq!(
            (
                virt.origin.as_str(),
                virt.host.as_str(),
                virt.base_path.as_str()
            ),
            (
                "https://clinic.objects.example.org:8443",
                "clinic.objects.example.org:8443",
                "/"
            )
        );
        assert_eq!(
            path.location(),
            "s3://clinic/p (https://objects.example.org:8443)"
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let waits: Vec<Duration> = (1..8).map(backoff).collect();
        assert!(waits[0] >= Duration::from_millis(200) && waits[0] < Duration::from_millis(400));
        assert!(waits[2] >= Duration::from_millis(800));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(5)));
    }

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Answer {
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, reqwest::header::HeaderValue::from_static(v));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: Bytes::from(body.to_owned()),
            attempts: 1,
        }
    }

    #[test]
    fn errors_say_what_to_fix() {
        let s = store(true, "p");
        let text = |a: &Answer| s.unexpected("reading x", a).to_string();
        // A HEAD in the wrong region: no body, the region in a header.
        let moved = text(&answer(301, &[("x-amz-bucket-region", "eu-west-1")], ""));
        assert!(moved.contains("set AWS_REGION=eu-west-1"), "{moved}");
        let missing = text(&answer(
            404,
            &[],
            "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>",
        ));
        assert!(
            missing.contains("bucket clinic does not exist"),
            "{missing}"
        );
        let denied = text(&answer(
            403,
            &[],
            "<Error><Code>AccessDenied</Code></Error>",
        ));
        assert!(denied.contains("lack permission"), "{denied}");
        let signature = text(&answer(
            403,
            &[],
            "<Error><Code>SignatureDoesNotMatch</Code></Error>",
        ));
        assert!(signature.contains("AWS_SECRET_ACCESS_KEY"), "{signature}");
        let mut retried = answer(503, &[], "<Error><Code>SlowDown</Code></Error>");
        retried.attempts = 5;
        let slow = text(&retried);
        assert!(
            slow.contains("SlowDown") && slow.contains("after 5 attempts"),
            "{slow}"
        );
        assert!(!text(&retried).contains("very secret"));
    }

    #[test]
    fn content_range_gives_the_total() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::CONTENT_RANGE,
            reqwest::header::HeaderValue::from_static("bytes 90-99/100"),
        );
        assert_eq!(content_range_total(&h), Some(100));
        h.insert(
            reqwest::header::CONTENT_RANGE,
            reqwest::header::HeaderValue::from_static("bytes */42"),
        );
        assert_eq!(content_range_total(&h), Some(42));
    }
}
