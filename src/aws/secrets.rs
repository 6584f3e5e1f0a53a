//! The W&B API key kept in AWS. `WANDB_API_KEY_SECRET_ARN` names a Secrets Manager secret (its
//! ARN or name) whose SecretString is the key, or a JSON object holding it under
//! `WANDB_API_KEY` or `api_key`; `WANDB_API_KEY_SSM_NAME` names an SSM parameter (a
//! SecureString, read decrypted). `WANDB_API_KEY`, when set, still wins.
//!
//! The key is fetched at the first run that needs it, not at import, once per process, and is
//! kept in memory only. A Lambda handler's decorator starts the fetch during INIT, so that the
//! first response does not wait for it. Endpoints follow the AWS SDKs' variables (`AWS_ENDPOINT_URL_SECRETS_MANAGER`,
//! `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL`), so a VPC endpoint or a test server can be named.
//! Errors name the secret and what to fix, never a value.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::{json, Value as Json};

use super::credentials::Source;
use super::sigv4;
use tokio::task::JoinHandle;

use crate::api::transport;
use crate::core::runtime::runtime;
use crate::core::system::current_pid;
use crate::error::Error;

/// AWS answers in milliseconds; this bounds an endpoint that hangs (the run's creation waits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The JSON keys a secret's JSON value may hold the key under.
const JSON_KEYS: [&str; 2] = ["WANDB_API_KEY", "api_key"];

/// Where the key is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A Secrets Manager secret, by ARN or name.
    Secret(String),
    /// An SSM parameter, by name or ARN.
    Parameter(String),
}

/// The key fetched in this process, with where it came from.
static FETCHED: Mutex<Option<(KeySource, String)>> = Mutex::new(None);
/// A fetch under way ahead of the first run, with the process that started it (a forked child
/// cannot wait on its parent's runtime).
static PREFETCH: Mutex<Option<(u32, KeySource, Fetch)>> = Mutex::new(None);

type Fetch = JoinHandle<Result<String, Error>>;

impl KeySource {
    /// The source the environment configures, if any.
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        var("WANDB_API_KEY_SECRET_ARN")
            .map(Self::Secret)
            .or_else(|| var("WANDB_API_KEY_SSM_NAME").map(Self::Parameter))
    }

    fn id(&self) -> &str {
        match self {
            Self::Secret(id) | Self::Parameter(id) => id,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Secret(id) => format!("Secrets Manager secret {id} (WANDB_API_KEY_SECRET_ARN)"),
            Self::Parameter(id) => format!("SSM parameter {id} (WANDB_API_KEY_SSM_NAME)"),
        }
    }

    /// The service's signing name, its endpoint variable, and what the request asks.
    fn service(&self) -> (&'static str, &'static str, &'static str, Json) {
        match self {
            Self::Secret(id) => (
                "secretsmanager",
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                "secretsmanager.GetSecretValue",
                json!({ "SecretId": id }),
            ),
            Self::Parameter(id) => (
                "ssm",
                "AWS_ENDPOINT_URL_SSM",
                "AmazonSSM.GetParameter",
                json!({ "Name": id, "WithDecryption": true }),
            ),
        }
    }

    /// What the role needs to be granted.
    fn permission(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secretsmanager:GetSecretValue",
            Self::Parameter(_) => "ssm:GetParameter (and kms:Decrypt for a SecureString)",
        }
    }
}

/// The API key from AWS for a run resolved with `env`, when the environment keeps it there
/// and the run needs one: None when `WANDB_API_KEY` is set, when no secret is configured, or
/// in an offline or disabled `mode` (the argument, else `WANDB_MODE`). Waits for a fetch
/// `prefetch` started, else fetches; must not be called from the tokio runtime's threads.
pub fn api_key(
    env: &impl Fn(&str) -> Option<String>,
    mode: Option<&str>,
) -> Result<Option<String>, Error> {
    let Some(source) = needed(env, mode) else {
        return Ok(None);
    };
    if let Some(key) = kept(&source) {
        return Ok(Some(key));
    }
    let runtime = runtime()?;
    let started = take_prefetch(&source).map(|fetch| runtime.block_on(fetch));
    let key = match started {
        Some(Ok(fetched)) => fetched?,
        // Not started, or the task was lost: fetch now.
        _ => runtime.block_on(SignedRequest::new(&source, env)?.send(source.clone()))?,
    };
    *fetched() = Some((source, key.clone()));
    Ok(Some(key))
}

/// Starts fetching the key `api_key` will want, in the background, when there is one to fetch.
/// Problems are left for `api_key` to report where the run is created.
pub fn prefetch(env: &impl Fn(&str) -> Option<String>, mode: Option<&str>) {
    let Some(source) = needed(env, mode) else {
        return;
    };
    if kept(&source).is_some() {
        return;
    }
    let (Ok(request), Ok(runtime)) = (SignedRequest::new(&source, env), runtime()) else {
        return;
    };
    let fetch = runtime.spawn(request.send(source.clone()));
    *lock(&PREFETCH) = Some((current_pid(), source, fetch));
}

/// Where the key is to be read from, when a run resolved with `env` and `mode` needs it.
fn needed(env: &impl Fn(&str) -> Option<String>, mode: Option<&str>) -> Option<KeySource> {
    if env("WANDB_API_KEY").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let mode = mode.map(str::to_string).or_else(|| env("WANDB_MODE"));
    if matches!(mode.as_deref(), Some("offline" | "disabled" | "dryrun")) {
        return None;
    }
    KeySource::from_env(env)
}

/// The key already fetched from `source` in this process.
fn kept(source: &KeySource) -> Option<String> {
    let fetched = fetched();
    let (from, key) = fetched.as_ref()?;
    (from == source).then(|| key.clone())
}

/// The fetch started from `source` in this process, if any (any other is dropped).
fn take_prefetch(source: &KeySource) -> Option<Fetch> {
    let (pid, from, fetch) = lock(&PREFETCH).take()?;
    if pid != current_pid() {
        // The parent's runtime does not run here: its task can never be awaited.
        std::mem::forget(fetch);
        return None;
    }
    (from == *source).then_some(fetch)
}

/// Forgets the fetched key, so that the next run fetches it again (after W&B refused it: the
/// secret may have been rotated).
pub fn forget() {
    *fetched() = None;
}

fn fetched() -> MutexGuard<'static, Option<(KeySource, String)>> {
    lock(&FETCHED)
}

fn lock<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything a fetch needs from the environment, read before any request.
struct SignedRequest {
    endpoint: Url,
    region: String,
    credentials: Source,
}

impl SignedRequest {
    fn new(source: &KeySource, env: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (service, endpoint_var, _, _) = source.service();
        // A secret's ARN names its region (a secret may live in another region).
        let region = arn_region(source.id())
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "cannot read the W&B API key from the {}: no AWS region (set AWS_REGION, or \
                     give the ARN)",
                    source.describe()
                ))
            })?;
        let endpoint = var(endpoint_var)
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| {
                let suffix = if region.starts_with("cn-") { ".cn" } else { "" };
                format!("https://{service}.{region}.amazonaws.com{suffix}")
            });
        let endpoint = Url::parse(&endpoint).map_err(|e| {
            Error::Usage(format!(
                "{endpoint_var} (or AWS_ENDPOINT_URL) {endpoint:?} is not a URL: {e}"
            ))
        })?;
        let credentials = Source::from_env(env).map_err(|err| {
            Error::Auth(format!(
                "cannot read the W&B API key from the {}: {err}",
                source.describe()
            ))
        })?;
        Ok(Self {
            endpoint,
            region,
            credentials,
        })
    }

    async fn send(self, source: KeySource) -> Result<String, Error> {
        let source = &source;
        let (service, _, target, body) = source.service();
        let failed = |why: String| {
            Error::Auth(format!(
                "cannot read the W&B API key from the {}: {why}",
                source.describe()
            ))
        };
        let credentials = self
            .credentials
            .credentials()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let body = body.to_string().into_bytes();
        let host = match self.endpoint.port() {
            Some(port) => format!("{}:{port}", self.endpoint.host_str().unwrap_or_default()),
            None => self.endpoint.host_str().unwrap_or_default().to_string(),
        };
        let content_type = "application/x-amz-json-1.1";
        let headers = [("content-type", content_type), ("x-amz-target", target)];
        let request = sigv4::Request {
            method: "POST",
            host: &host,
            path: "/",
            query: &[],
            headers: &headers,
            body: &body,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut call = transport::client()?
            .post(self.endpoint.clone())
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", content_type)
            .header("x-amz-target", target);
        for (name, value) in sigv4::sign(&request, &credentials, &self.region, service, now) {
            call = call.header(name, value);
        }
        let response = call.body(body).send().await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot read the W&B API key from the {}: {} cannot be reached ({})",
                source.describe(),
                self.endpoint,
                transport::error_chain(&e)
            ))
        })?;
        let status = response.status();
        let answer = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(failed(refusal(source, status.as_u16(), &answer)));
        }
        let json: Json = serde_json::from_slice(&answer)
            .map_err(|_| failed("AWS answered with something that is not JSON".into()))?;
        let value = match source {
            KeySource::Secret(_) => json["SecretString"].as_str(),
            KeySource::Parameter(_) => json["Parameter"]["Value"].as_str(),
        };
        let value = value.ok_or_else(|| failed("it holds no text value".into()))?;
        key_from_value(value).map_err(failed)
    }
}

/// The key in a secret's value: the value itself, or the string under one of `JSON_KEYS` of a
/// JSON object. Never quotes the value.
fn key_from_value(value: &str) -> Result<String, String> {
    let key = match serde_json::from_str::<Json>(value) {
        Ok(Json::Object(object)) => JSON_KEYS
            .iter()
            .find_map(|name| object.get(*name).and_then(Json::as_str))
            .ok_or_else(|| {
                format!(
                    "its value is a JSON object without a string under {}",
                    JSON_KEYS.join(" or ")
                )
            })?
            .to_string(),
        _ => value.to_string(),
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err("its value is empty".into());
    }
    Ok(key)
}

/// Why AWS refused, from its error code (a JSON `__type`, or an XML `<Code>` as some answer),
/// with what to do about it.
fn refusal(source: &KeySource, status: u16, answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let code = serde_json::from_str::<Json>(&text)
        .ok()
        .and_then(|json| json["__type"].as_str().map(str::to_string))
        .or_else(|| {
            let start = text.find("<Code>")? + "<Code>".len();
            let end = text[start..].find("</Code>")? + start;
            Some(text[start..end].to_string())
        })
        .unwrap_or_default();
    let code = code.rsplit('#').next().unwrap_or_default();
    match code {
        "ResourceNotFoundException" | "ParameterNotFound" => {
            "it does not exist (check the name or ARN, and the region)".into()
        }
        "AccessDeniedException" | "AccessDenied" => format!(
            "the function's role may not read it: grant it {} on this resource",
            source.permission()
        ),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException" => {
            format!("AWS refused the credentials ({code}): they are wrong or expired")
        }
        "" => format!("AWS answered HTTP {status}"),
        other => format!("AWS answered HTTP {status} ({other})"),
    }
}

/// The region field of an ARN (`arn:partition:service:region:account:...`).
fn arn_region(id: &str) -> Option<String> {
    let fields: Vec<&str> = id.split(':').collect();
    (fields.len() >= 6 && fields[0] == "arn" && !fields[3].is_empty())
        .then(|| fields[3].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn the_secret_wins_over_the_parameter_and_the_plain_key_over_both() {
        let both = env(&[
            ("WANDB_API_KEY_SECRET_ARN", "wandb"),
            ("WANDB_API_KEY_SSM_NAME", "/wandb/key"),
        ]);
        assert_eq!(
            KeySource::from_env(&both),
            Some(KeySource::Secret("wandb".into()))
        );
        let plain = env(&[
            ("WANDB_API_KEY", "k"),
            ("WANDB_API_KEY_SECRET_ARN", "wandb"),
        ]);
        assert_eq!(api_key(&plain, None).unwrap(), None);
        let offline = env(&[
            ("WANDB_API_KEY_SECRET_ARN", "wandb"),
            ("WANDB_MODE", "offline"),
        ]);
        assert_eq!(api_key(&offline, None).unwrap(), None);
        assert_eq!(api_key(&env(&[]), None).unwrap(), None);
    }

    #[test]
    fn a_value_is_the_key_or_a_json_object_holding_it() {
        assert_eq!(key_from_value(" abc \n").unwrap(), "abc");
        assert_eq!(
            key_from_value(r#"{"WANDB_API_KEY": "abc"}"#).unwrap(),
            "abc"
        );
        assert_eq!(
            key_from_value(r#"{"api_key": "abc", "x": 1}"#).unwrap(),
            "abc"
        );
        let missing = key_from_value(r#"{"token": "secret-value"}"#).unwrap_err();
        assert!(missing.contains("WANDB_API_KEY or api_key"), "{missing}");
        assert!(!missing.contains("secret-value"));
        assert_eq!(key_from_value("  ").unwrap_err(), "its value is empty");
    }

    #[test]
    fn refusals_say_what_to_fix() {
        let secret = KeySource::Secret("wandb".into());
        let not_found = br#"{"__type":"ResourceNotFoundException","message":"x"}"#;
        assert!(refusal(&secret, 400, not_found).contains("does not exist"));
        let denied = br#"{"__type":"AccessDeniedException"}"#;
        assert!(refusal(&secret, 400, denied).contains("secretsmanager:GetSecretValue"));
        let xml =
            b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>";
        assert!(refusal(&secret, 403, xml).contains("wrong or expired"));
        assert_eq!(refusal(&secret, 500, b""), "AWS answered HTTP 500");
    }

    #[test]
    fn an_arn_names_its_region() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wandb-AbCdEf";
        assert_eq!(arn_region(arn).as_deref(), Some("eu-west-1"));
        assert_eq!(arn_region("wandb"), None);
        assert_eq!(arn_region("/wandb/key"), None);
    }

    #[test]
    fn without_a_region_or_credentials_the_secret_is_named() {
        let no_region = env(&[("WANDB_API_KEY_SECRET_ARN", "wandb")]);
        let err = api_key(&no_region, None).unwrap_err().to_string();
        assert!(
            err.contains("Secrets Manager secret wandb") && err.contains("AWS_REGION"),
            "{err}"
        );
        let no_credentials = env(&[
            ("WANDB_API_KEY_SSM_NAME", "/wandb/key"),
            ("AWS_REGION", "us-east-1"),
        ]);
        let err = api_key(&no_credentials, None).unwrap_err().to_string();
        assert!(
            err.contains("SSM parameter /wandb/key") && err.contains("no AWS credentials"),
            "{err}"
        );
    }
}
