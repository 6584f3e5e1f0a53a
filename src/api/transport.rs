//! Talking to the W&B API: one configured HTTP client per process, GraphQL operations, the
//! file_stream endpoint and signed-URL uploads, all behind one retry policy.
//!
//! The API key is sent only to the base URL (GraphQL and file_stream); uploads to signed URLs
//! never carry it, and redirects are not followed, so it cannot leak to another host.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value as Json};
use tokio::time::{sleep, Instant};

use crate::api::file_stream::{Batch, CONSOLE_FILE, HISTORY_FILE, SUMMARY_FILE};
use crate::core::settings::{parse_base_url, ApiKey, RetryPolicy};
use crate::core::system::{self, ProcessLocal};
use crate::error::Error;

/// The process's client, with the connection generation it was built in (see
/// `reset_connections`). A forked child builds its own: the parent's pooled connections
/// belong to a runtime the child does not have.
static CLIENT: ProcessLocal<(u64, Client)> = ProcessLocal::new();
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The process's HTTP client, built on first use.
pub fn client() -> Result<Client, Error> {
    let generation = GENERATION.load(Ordering::Acquire);
    let (_, client) = CLIENT.get_or_make(
        |(built_in, _)| *built_in == generation,
        || Ok::<_, Error>((generation, build_client()?)),
    )?;
    Ok(client)
}

/// Makes later requests use new connections. Lambda calls for it when the process is thawed:
/// a pooled connection may have been dropped by the peer or a NAT during the freeze, and a
/// request written into it would hang until its timeout. Requests in flight keep theirs.
pub fn reset_connections() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

fn build_client() -> Result<Client, Error> {
    Client::builder()
        .tls_backend_preconfigured(crate::api::tls::client_config()?)
        .user_agent(concat!("wandb-nexus/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(tls_setup_error)
}

fn tls_setup_error(err: reqwest::Error) -> Error {
    Error::Comm(format!(
        "cannot set up the HTTP client: {}",
        error_chain(&err)
    ))
}

/// A GET sent without the API key (a signed storage URL, a public reference), answered with
/// a success; otherwise why not, for the caller to say what it was fetching.
pub async fn get_keyless(url: &str) -> Result<reqwest::Response, String> {
    let client = client().map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    match response.status().is_success() {
        true => Ok(response),
        false => Err(format!("HTTP {}", response.status())),
    }
}

/// reqwest's own message hides the cause (refused, TLS, DNS); include the whole chain.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = current.downcast_ref() {
            return true;
        }
        // io::Error's source() skips the error it wraps; step into it instead.
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    false
}

/// A failed attempt: worth retrying or not.
enum Attempt {
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fail(Error),
}

/// Where a run lives on the server, as the server named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTarget {
    pub entity: String,
    pub project: String,
    pub run_id: String,
    pub display_name: Option<String>,
    pub storage_id: Option<String>,
    pub history_line_count: u64,
}

/// The fields of an UpsertBucket call; `None` is sent as null ("unchanged").
#[derive(Clone, Debug, Default)]
pub struct RunUpsert {
    pub storage_id: Option<String>,
    pub run_id: String,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub display_name: Option<String>,
    pub notes: Option<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub tags: Option<Vec<String>>,
    pub host: Option<String>,
    pub program: Option<String>,
    /// The config as W&B stores it (`{"key": {"value": v}}`), JSON text.
    pub config: Option<String>,
}

/// What the server holds of a run that is to be resumed (RunResumeStatus), parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResumeStatus {
    pub storage_id: String,
    /// Lines the server holds of `wandb-history.jsonl`, `wandb-events.jsonl`, `output.log`.
    pub history_lines: u64,
    pub events_lines: u64,
    pub console_lines: u64,
    /// The summary, `{"key": value}`.
    pub summary: serde_json::Map<String, Json>,
    /// The config, unwrapped from `{"key": {"value": v}}`.
    pub config: serde_json::Map<String, Json>,
    pub tags: Vec<String>,
    pub notes: Option<String>,
    /// The last history line's `_step`, else the summary's.
    pub last_step: Option<i64>,
    /// Seconds the run has run: the largest `_runtime` the server shows.
    pub runtime: f64,
}

/// The signed-in user, as the Viewer query names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub entity: Option<String>,
    pub username: Option<String>,
}

/// `["Name:Value", ...]` upload headers, as the server lists them, as pairs.
pub fn upload_headers(list: &Json) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .filter_map(|h| h.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// A signed URL for one run file.
#[derive(Clone, Debug)]
pub struct UploadTarget {
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The parts of a file_stream response the client acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamReply {
    /// The run was stopped from the W&B UI.
    pub stopped: bool,
}

pub struct Transport {
    base_url: Url,
    auth: HeaderValue,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

const UPSERT_BUCKET: &str = "mutation UpsertBucket($id: String, $name: String, \
$project: String, $entity: String, $groupName: String, $description: String, \
$displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, \
$debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, \
$sweep: String, $tags: [String!], $summaryMetrics: JSONString) { upsertBucket(input: {id: $id, \
name: $name, groupName: $groupName, modelName: $project, entityName: $entity, \
description: $description, displayName: $displayName, notes: $notes, config: $config, \
commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, \
jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, \
summaryMetrics: $summaryMetrics}) { bucket { id name displayName description config \
sweepName project { id name entity { id name } } historyLineCount } inserted } }";

const CREATE_RUN_FILES: &str = "mutation CreateRunFiles($entity: String!, $project: String!, \
$run: String!, $files: [String!]!) { createRunFiles(input: {entityName: $entity, \
projectName: $project, runName: $run, files: $files}) { runID uploadHeaders \
files { name uploadUrl } } }";

const RUN_RESUME_STATUS: &str = "query RunResumeStatus($project: String, $entity: String, \
$name: String!) { model(name: $project, entityName: $entity) { id name entity { id name } \
bucket(name: $name, missingOk: true) { id name summaryMetrics displayName logLineCount \
historyLineCount eventsLineCount historyTail eventsTail config tags notes \
wandbConfig(keys: [\"t\"]) } } }";

const NOTIFY_SCRIPTABLE_RUN_ALERT: &str = "mutation NotifyScriptableRunAlert(\
$entityName: String!, $projectName: String!, $runName: String!, $title: String!, \
$text: String!, $severity: AlertSeverity = INFO, $waitDuration: Duration) { \
notifyScriptableRunAlert(input: {entityName: $entityName, projectName: $projectName, \
runName: $runName, title: $title, text: $text, severity: $severity, \
waitDuration: $waitDuration}) { success } }";

const VIEWER: &str = "query Viewer { viewer { id entity username } }";

impl Transport {
    pub fn new(base_url: &str, api_key: &ApiKey, policy: RetryPolicy) -> Result<Self, Error> {
        let base_url = parse_base_url(base_url)?;
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("api:{}", api_key.expose()));
        let mut auth = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            Error::Usage("the API key contains characters not allowed in HTTP".into())
        })?;
        auth.set_sensitive(true);
        // Built here, so a bad SSL_CERT_FILE fails at init rather than at the first request.
        client()?;
        Ok(Self {
            base_url,
            auth,
            policy,
        })
    }

    /// Where this machine's processes note when W&B said to come back (Retry-After), as Unix
    /// ms: every request waits for it, not only the retry of the one refused, and so do the
    /// other processes (a Lambda runtime and its extension, a later invocation's sweep).
    fn back_at_file(&self) -> PathBuf {
        let host = self.base_url.host_str().unwrap_or_default();
        let port = self.base_url.port_or_known_default().unwrap_or_default();
        let host: String = host.chars().filter(char::is_ascii_alphanumeric).collect();
        std::env::temp_dir().join(format!("wandb-nexus-retry-after-{host}-{port}"))
    }

    /// When W&B said to come back, if that is still ahead.
    fn server_back_at(&self) -> Option<Instant> {
        let text = std::fs::read_to_string(self.back_at_file()).ok()?;
        let back_ms: u64 = text.trim().parse().ok()?;
        let now_ms = (system::unix_now() * 1000.0) as u64;
        (back_ms > now_ms).then(|| Instant::now() + Duration::from_millis(back_ms - now_ms))
    }

    fn server_asked_to_wait(&self, after: Duration) {
        let asked = Instant::now() + after;
        if self.server_back_at().is_some_and(|at| at >= asked) {
            return;
        }
        let back_ms = (system::unix_now() * 1000.0) as u64 + after.as_millis() as u64;
        // Best effort: without the note, only this request's retry waits.
        let _ = write_atomically(&self.back_at_file(), back_ms.to_string().as_bytes());
    }

    fn endpoint(&self, path: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(path);
        url
    }

    /// Sends a request built by `build` until it succeeds, fails permanently, or the retry
    /// budget is spent; the budget bounds the last attempt too. Returns the response body as
    /// `decode` reads it: an answer it cannot read counts as a failed attempt.
    /// Each attempt takes the process's client anew, so one after `reset_connections` uses a
    /// fresh connection.
    async fn send<T>(
        &self,
        what: &str,
        build: impl Fn(&Client) -> RequestBuilder,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.policy.budget;
        let mut wait = self.policy.wait_min;
        loop {
            if let Some(at) = self.server_back_at() {
                if at >= deadline {
                    return Err(Error::Unavailable(format!(
                        "{what}: W&B asked to wait {:?} more (Retry-After), past the retry budget",
                        at.saturating_duration_since(Instant::now())
                    )));
                }
                tokio::time::sleep_until(at).await;
            }
            let timeout = self
                .policy
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let answer = self
                .attempt(what, build(&client()?).timeout(timeout))
                .await
                .and_then(|body| {
                    decode(&body).map_err(|reason| Attempt::Retry {
                        reason: format!("{what}: {reason}"),
                        after: None,
                    })
                });
            match answer {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fail(err)) => return Err(err),
                Err(Attempt::Retry { reason, after }) => {
                    if let Some(after) = after {
                        self.server_asked_to_wait(after);
                    }
                    let pause = after.unwrap_or_else(|| jittered(wait));
                    if Instant::now() + pause >= deadline {
                        return Err(Error::Unavailable(format!(
                            "{what} still failing after {:?} of retries: {reason}",
                            self.policy.budget
                        )));
                    }
                    sleep(pause).await;
                    wait = (wait * 2).min(self.policy.wait_max);
                }
            }
        }
    }

    async fn attempt(&self, what: &str, request: RequestBuilder) -> Result<Vec<u8>, Attempt> {
        let response = match request.send().await {
            Ok(response) => response,
            // A certificate the roots do not vouch for will not change on a retry.
            Err(err) if is_certificate_error(&err) => {
                return Err(Attempt::Fail(Error::Comm(format!(
                    "{what}: the server's TLS certificate was refused ({}); for a private \
                     CA or a self-signed server certificate, set SSL_CERT_FILE to its PEM file",
                    error_chain(&err)
                ))))
            }
            // Timeouts, refused or reset connections, stale pooled sockets: all transient.
            Err(err) => {
                return Err(Attempt::Retry {
                    reason: error_chain(&err),
                    after: None,
                })
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(err) => {
                return Err(Attempt::Retry {
                    reason: format!("reading the response: {}", error_chain(&err)),
                    after: None,
                })
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let detail = server_message(&body);
        let reason = format!("{what}: HTTP {status}{detail}");
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Attempt::Fail(Error::Auth(format!(
                "{reason}; check WANDB_API_KEY (or the netrc entry for {})",
                self.base_url.host_str().unwrap_or_default()
            ))));
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
        {
            return Err(Attempt::Retry {
                reason,
                after: retry_after,
            });
        }
        Err(Attempt::Fail(Error::Comm(reason)))
    }

    /// An authenticated JSON POST to the API (GraphQL and file_stream); the JSON answer.
    /// An answer that is not JSON (a proxy's error page, a body cut short) is retried: the
    /// request may not have reached W&B, and resending any of ours is safe.
    async fn post_json(&self, what: &str, url: Url, body: Vec<u8>) -> Result<Json, Error> {
        self.send(
            what,
            |client| {
                client
                    .post(url.clone())
                    .header(AUTHORIZATION, self.auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            |answer| {
                serde_json::from_slice(answer).map_err(|e| format!("the answer is not JSON ({e})"))
            },
        )
        .await
    }

    /// A GraphQL operation's data. An answer with errors fails it, as in wandb-core, and is
    /// not retried: the server understood the request and refused it.
    pub(crate) async fn graphql(
        &self,
        name: &str,
        query: &str,
        variables: Json,
    ) -> Result<Json, Error> {
        let body = json!({"query": query, "variables": variables, "operationName": name});
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        let mut reply = self
            .post_json(name, self.endpoint(&["graphql"]), body)
            .await?;
        if let Some(errors) = reply.get("errors").and_then(Json::as_array) {
            if !errors.is_empty() {
                let messages: Vec<String> = errors
                    .iter()
                    .filter_map(|e| e.get("message").and_then(Json::as_str))
                    .map(brief)
                    .collect();
                return Err(Error::Comm(format!("{name}: {}", messages.join("; "))));
            }
        }
        match reply.get_mut("data").map(Json::take) {
            Some(data) if data.is_object() => Ok(data),
            _ => Err(Error::Comm(format!(
                "{name}: the server's answer has no data"
            ))),
        }
    }

    /// Creates or updates a run and returns where the server put it.
    pub async fn upsert_run(&self, run: &RunUpsert) -> Result<RunTarget, Error> {
        let variables = json!({
            "id": run.storage_id, "name": run.run_id, "project": run.project,
            "entity": run.entity, "groupName": run.group, "description": null,
            "displayName": run.display_name, "notes": run.notes, "commit": null,
            "config": run.config, "host": run.host, "debug": null, "program": run.program,
            "repo": null, "jobType": run.job_type, "state": null, "sweep": null,
            "tags": run.tags, "summaryMetrics": null,
        });
        let data = self
            .graphql("UpsertBucket", UPSERT_BUCKET, variables)
            .await?;
        let bucket = &data["upsertBucket"]["bucket"];
        let text = |value: &Json| value.as_str().map(str::to_owned);
        let (Some(run_id), Some(project), Some(entity)) = (
            text(&bucket["name"]),
            text(&bucket["project"]["name"]),
            text(&bucket["project"]["entity"]["name"]),
        ) else {
            return Err(Error::Comm(
                "UpsertBucket: the answer lacks the run's name, project or entity".into(),
            ));
        };
        Ok(RunTarget {
            entity,
            project,
            run_id,
            display_name: text(&bucket["displayName"]),
            storage_id: text(&bucket["id"]),
            history_line_count: bucket["historyLineCount"].as_u64().unwrap_or(0),
        })
    }

    /// What the server holds of run `run_id`, or `None` when it holds no started run of that
    /// id (a run counts as started once its config has `_wandb.t`, as in wandb). An answer
    /// without the line counts is an error: resuming from it could overwrite rows.
    pub async fn resume_status(
        &self,
        entity: Option<&str>,
        project: Option<&str>,
        run_id: &str,
    ) -> Result<Option<ResumeStatus>, Error> {
        let variables = json!({"project": project, "entity": entity, "name": run_id});
        let data = self
            .graphql("RunResumeStatus", RUN_RESUME_STATUS, variables)
            .await?;
        let bucket = &data["model"]["bucket"];
        if !bucket.is_object() {
            return Ok(None);
        }
        let started =
            json_text(&bucket["wandbConfig"]).is_some_and(|config| config.get("t").is_some());
        if !started {
            return Ok(None);
        }
        parse_resume_status(bucket).map(Some).map_err(|problem| {
            Error::Comm(format!(
                "RunResumeStatus: the server's answer for run {run_id} cannot be resumed \
                 from: {problem}"
            ))
        })
    }

    /// Sends an alert about a run (`run.alert`); `wait_duration` in milliseconds.
    pub async fn notify_alert(
        &self,
        target: &RunTarget,
        alert: &crate::log::records::AlertRecord,
    ) -> Result<(), Error> {
        let variables = json!({
            "entityName": target.entity, "projectName": target.project,
            "runName": target.run_id, "title": alert.title, "text": alert.text,
            "severity": alert.level, "waitDuration": alert.wait_duration,
        });
        self.graphql(
            "NotifyScriptableRunAlert",
            NOTIFY_SCRIPTABLE_RUN_ALERT,
            variables,
        )
        .await
        .map(drop)
    }

    /// Who the API key belongs to: checks the key against the server.
    pub async fn viewer(&self) -> Result<Viewer, Error> {
        let data = self.graphql("Viewer", VIEWER, json!({})).await?;
        let viewer = &data["viewer"];
        if !viewer.is_object() {
            return Err(Error::Auth(
                "the server does not recognise this API key".into(),
            ));
        }
        let text = |key: &str| viewer[key].as_str().map(str::to_owned);
        Ok(Viewer {
            entity: text("entity"),
            username: text("username"),
        })
    }

    /// Signed upload URLs for run files (paths relative to the files directory).
    pub async fn create_run_files(
        &self,
        target: &RunTarget,
        files: &[String],
    ) -> Result<Vec<UploadTarget>, Error> {
        let variables = json!({
            "entity": target.entity, "project": target.project, "run": target.run_id,
            "files": files,
        });
        let data = self
            .graphql("CreateRunFiles", CREATE_RUN_FILES, variables)
            .await?;
        let answer = &data["createRunFiles"];
        let headers = upload_headers(&answer["uploadHeaders"]);
        let returned = answer["files"].as_array().cloned().unwrap_or_default();
        if returned.len() != files.len() {
            return Err(Error::Comm(format!(
                "CreateRunFiles: asked for {} upload URLs, got {}",
                files.len(),
                returned.len()
            )));
        }
        Ok(returned
            .iter()
            .filter_map(|file| {
                let name = file["name"].as_str()?;
                let url = file["uploadUrl"].as_str()?;
                // Only the names we asked for: never write where the server says.
                files.iter().any(|f| f == name).then(|| UploadTarget {
                    name: name.to_string(),
                    url: url.to_string(),
                    headers: headers.clone(),
                })
            })
            .collect())
    }

    /// PUTs a file to its signed URL. No Authorization header: the URL is the credential.
    /// Uploads a file from disk (read off the async threads) to its signed URL.
    pub async fn upload_file(
        &self,
        target: &UploadTarget,
        path: std::path::PathBuf,
    ) -> Result<(), Error> {
        let contents = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| Error::Comm(format!("reading {}: {e}", target.name)))?
            .map_err(|e| Error::io(format!("reading {}", target.name), e))?;
        self.upload(target, contents).await
    }

    pub async fn upload(&self, target: &UploadTarget, contents: Vec<u8>) -> Result<(), Error> {
        let url = Url::parse(&target.url).map_err(|e| {
            Error::Comm(format!(
                "CreateRunFiles gave a bad URL for {}: {e}",
                target.name
            ))
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &target.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                if name != AUTHORIZATION {
                    headers.insert(name, value);
                }
            }
        }
        let what = format!("uploading {}", target.name);
        self.send(
            &what,
            |client| {
                // An explicit length: an empty body would otherwise go without one.
                client
                    .put(url.clone())
                    .headers(headers.clone())
                    .header(CONTENT_LENGTH, contents.len())
                    .body(contents.clone())
            },
            // Storage services answer what they like; the status is what counts.
            |_| Ok(()),
        )
        .await
    }

    /// Sends one file_stream request: the batch's lines at their offsets, files whose uploads
    /// finished, and (last of all) completion with the exit code.
    pub async fn file_stream(
        &self,
        target: &RunTarget,
        batch: &Batch,
        uploaded: &[String],
        exit_code: Option<i32>,
    ) -> Result<StreamReply, Error> {
        let body = file_stream_body(batch, uploaded, exit_code);
        let url = self.endpoint(&[
            "files",
            &target.entity,
            &target.project,
            &target.run_id,
            "file_stream",
        ]);
        let reply = self.post_json("file_stream", url, body).await?;
        // Only `stopped` matters.
        let stopped = reply
            .get("stopped")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        Ok(StreamReply { stopped })
    }
}

/// The file_stream JSON body. History and summary lines are our own JSON text (with bare
/// NaN tokens) and travel as JSON strings.
pub fn file_stream_body(batch: &Batch, uploaded: &[String], exit_code: Option<i32>) -> Vec<u8> {
    let mut files = serde_json::Map::new();
    let mut add = |name: &str, offset: u64, lines: &[String]| {
        if !lines.is_empty() {
            files.insert(
                name.to_string(),
                json!({"offset": offset, "content": lines}),
            );
        }
    };
    add(CONSOLE_FILE, batch.console.offset, &batch.console.lines);
    add(HISTORY_FILE, batch.history.offset, &batch.history.lines);
    if let Some(summary) = &batch.summary {
        add(SUMMARY_FILE, 0, std::slice::from_ref(summary));
    }
    let mut body = serde_json::Map::new();
    if !files.is_empty() {
        body.insert("files".into(), Json::Object(files));
    }
    if !uploaded.is_empty() {
        body.insert("uploaded".into(), json!(uploaded));
    }
    if let Some(code) = exit_code {
        body.insert("complete".into(), Json::Bool(true));
        body.insert("exitcode".into(), json!(code));
    }
    serde_json::to_vec(&Json::Object(body)).expect("JSON values serialize")
}

/// A JSONString field's object, if it holds one.
fn json_text(value: &Json) -> Option<serde_json::Map<String, Json>> {
    match serde_json::from_str(value.as_str()?).ok()? {
        Json::Object(map) => Some(map),
        _ => None,
    }
}

/// The last line of a tail (a JSONString of an array of JSON lines), parsed.
fn tail_line(value: &Json) -> Option<serde_json::Map<String, Json>> {
    let lines: Vec<String> = serde_json::from_str(value.as_str()?).ok()?;
    match serde_json::from_str(lines.last()?).ok()? {
        Json::Object(map) => Some(map),
        _ => None,
    }
}

fn parse_resume_status(bucket: &Json) -> Result<ResumeStatus, String> {
    let count = |key: &str| {
        bucket[key]
            .as_u64()
            .ok_or_else(|| format!("{key} is {} where a count was expected", bucket[key]))
    };
    let storage_id = bucket["id"]
        .as_str()
        .ok_or("the run has no id")?
        .to_string();
    let summary = match &bucket["summaryMetrics"] {
        Json::Null => serde_json::Map::new(),
        value => json_text(value).ok_or("summaryMetrics is not a JSON object")?,
    };
    let config = match &bucket["config"] {
        Json::Null => serde_json::Map::new(),
        value => json_text(value)
            .ok_or("config is not a JSON object")?
            .into_iter()
            .filter_map(|(key, wrapped)| Some((key, wrapped.get("value")?.clone())))
            .collect(),
    };
    let history_tail = tail_line(&bucket["historyTail"]);
    let events_tail = tail_line(&bucket["eventsTail"]);
    let last_step = history_tail
        .as_ref()
        .and_then(|line| line.get("_step")?.as_i64())
        .or_else(|| summary.get("_step")?.as_i64());
    let summary_runtime = match summary.get("_wandb").and_then(|w| w.get("runtime")) {
        Some(runtime) => runtime.as_f64(),
        None => summary.get("_runtime").and_then(Json::as_f64),
    };
    let runtime = [
        events_tail
            .as_ref()
            .and_then(|l| l.get("_runtime")?.as_f64()),
        summary_runtime,
        history_tail
            .as_ref()
            .and_then(|l| l.get("_runtime")?.as_f64()),
    ]
    .into_iter()
    .flatten()
    .fold(0.0_f64, f64::max);
    Ok(ResumeStatus {
        storage_id,
        history_lines: count("historyLineCount")?,
        events_lines: count("eventsLineCount")?,
        console_lines: count("logLineCount")?,
        summary,
        config,
        tags: bucket["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tag| tag.as_str().map(str::to_owned))
            .collect(),
        notes: bucket["notes"].as_str().map(str::to_owned),
        last_step,
        runtime: runtime.trunc(),
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}", system::current_pid()));
    std::fs::write(&name, bytes)?;
    std::fs::rename(&name, path)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// ` (message)` from a JSON error body, if the server gave one; bodies are never echoed whole.
fn server_message(body: &[u8]) -> String {
    let Ok(reply) = serde_json::from_slice::<Json>(body) else {
        return String::new();
    };
    let message = reply["errors"][0]["message"]
        .as_str()
        .or_else(|| reply["error"].as_str())
        .or_else(|| reply["message"].as_str());
    message
        .map(|m| format!(" ({})", brief(m)))
        .unwrap_or_default()
}

/// A server's message, cut to a length fit for an error.
fn brief(message: &str) -> String {
    message.chars().take(300).collect()
}

/// Exponential backoff with up to 25% jitter, so many clients do not retry in step.
fn jittered(wait: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    wait.mul_f64(1.0 + 0.25 * f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mangled_resume_answer_is_refused_naming_the_field() {
        let good = json!({
            "id": "UnVu", "historyLineCount": 10, "eventsLineCount": 3, "logLineCount": 7,
            "summaryMetrics": "{\"_step\": 9, \"_wandb\": {\"runtime\": 43}}",
            "historyTail": "[\"{\\\"_step\\\": 9, \\\"_runtime\\\": 44.2}\"]",
            "config": "{\"lr\": {\"value\": 0.1}}", "tags": ["a"], "notes": "n",
        });
        let status = parse_resume_status(&good).unwrap();
        assert_eq!((status.history_lines, status.console_lines), (10, 7));
        assert_eq!((status.last_step, status.runtime), (Some(9), 44.0));
        assert_eq!(status.config["lr"], json!(0.1));
        for (field, mangled) in [
            ("historyLineCount", json!(null)),
            ("logLineCount", json!("7")),
            ("summaryMetrics", json!("[1, 2]")),
            ("config", json!("not json")),
        ] {
            let mut answer = good.clone();
            answer[field] = mangled;
            let problem = parse_resume_status(&answer).unwrap_err();
            assert!(problem.contains(field), "{problem}");
        }
    }
    use crate::api::file_stream::{line_cost, Chunk, MAX_REQUEST_BYTES, REQUEST_LINE_BYTES};

    #[test]
    fn file_stream_body_shape() {
        let batch = Batch {
            history: Chunk {
                offset: 3,
                lines: vec![r#"{"a":NaN}"#.into()],
            },
            summary: Some(r#"{"a":1}"#.into()),
            console: Chunk::default(),
        };
        let body: Json =
            serde_json::from_slice(&file_stream_body(&batch, &["config.yaml".into()], Some(0)))
                .unwrap();
        assert_eq!(
            body,
            json!({
                "files": {
                    "wandb-history.jsonl": {"offset": 3, "content": [r#"{"a":NaN}"#]},
                    "wandb-summary.json": {"offset": 0, "content": [r#"{"a":1}"#]},
                },
                "uploaded": ["config.yaml"],
                "complete": true,
                "exitcode": 0,
            })
        );
        assert_eq!(file_stream_body(&Batch::default(), &[], None), b"{}");
    }

    #[test]
    fn a_body_is_its_lines_costs_and_less_than_the_room_left_for_the_rest() {
        let line = "\"quoted\" \\ naïve \u{1}".to_string();
        let batch = Batch {
            history: Chunk {
                offset: u64::MAX,
                lines: vec![line.clone(); 3],
            },
            summary: Some(line.clone()),
            console: Chunk {
                offset: u64::MAX,
                lines: vec![line.clone(); 2],
            },
        };
        let uploaded = vec!["config.yaml".to_string(), "dir/naïve \"file\"".into()];
        let costs = 6 * line_cost(&line) + uploaded.iter().map(|n| line_cost(n)).sum::<usize>();
        let body = file_stream_body(&batch, &uploaded, Some(i32::MIN));
        assert!(body.len() <= costs + (MAX_REQUEST_BYTES - REQUEST_LINE_BYTES));
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(parse_base_url("https://api.wandb.ai").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8080/").is_ok());
        for bad in ["api.wandb.ai", "ftp://x", "https://", "not a url"] {
            assert!(parse_base_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn endpoints_join_onto_the_base_path() {
        let policy = RetryPolicy::default();
        let key = crate::core::settings::ApiKey::new("k".repeat(40));
        let transport = Transport::new("http://h:1/prefix/", &key, policy).unwrap();
        assert_eq!(
            transport
                .endpoint(&["files", "e", "p q", "r", "file_stream"])
                .as_str(),
            "http://h:1/prefix/files/e/p%20q/r/file_stream"
        );
        assert!(!format!("{transport:?}").contains(&"k".repeat(40)));
    }

    #[test]
    fn retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
