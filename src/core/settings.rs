//! Run settings: `init()` arguments first, then `WANDB_*` environment variables, then
//! defaults (wandb-protocol.md §1.4), validated once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// What `init()` was given; `None` means "not given".
#[derive(Clone, Debug, Default)]
pub struct InitArgs {
    pub project: Option<String>,
    pub entity: Option<String>,
    pub name: Option<String>,
    pub id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub notes: Option<String>,
    pub mode: Option<String>,
    pub dir: Option<String>,
    pub resume: Option<String>,
    /// The W&B API (else `WANDB_BASE_URL`), as `login(host=...)` or `Settings(base_url=...)`.
    pub base_url: Option<String>,
    /// The API key (else `WANDB_API_KEY`, then netrc), as `login(key=...)` gives it.
    pub api_key: Option<String>,
    /// Send nothing while the handler runs; delivery happens after the response (Lambda).
    pub defer_delivery: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Online,
    Offline,
    /// Every call succeeds and nothing is written.
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    Allow,
    Must,
    Never,
    Auto,
}

impl Resume {
    /// "allow" and "must" mark the run record so that a sync resumes the run, as wandb's
    /// `wandb sync` does; "auto" and "never" do not.
    pub fn marks_record(self) -> bool {
        matches!(self, Resume::Allow | Resume::Must)
    }
}

/// The API key. It is only ever handed to the transport; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How long the transport keeps trying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total time for one request, retries included.
    pub budget: Duration,
    pub wait_min: Duration,
    pub wait_max: Duration,
    /// Time for one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(60),
            wait_min: Duration::from_secs(1),
            wait_max: Duration::from_secs(16),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    /// Offline for want of an API key, not because offline was asked for.
    pub keyless: bool,
    pub api_key: Option<ApiKey>,
    pub base_url: String,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub display_name: Option<String>,
    pub notes: Option<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub tags: Vec<String>,
    pub resume: Option<Resume>,
    /// The directory that holds `wandb/`.
    pub root_dir: PathBuf,
    /// The W&B UI, for run URLs.
    pub app_url: String,
    pub retry: RetryPolicy,
    /// How often a live run sends what it has gathered.
    pub transmit_interval: Duration,
    /// How long a live run may stay quiet before it sends a heartbeat.
    pub heartbeat: Duration,
    /// No network while the run is open unless asked: the run is created on the server and
    /// its data sent when it is flushed or synced after the Lambda response.
    pub defer_delivery: bool,
    /// Running in AWS Lambda (or an emulation of it).
    pub on_lambda: bool,
}

pub const DEFAULT_BASE_URL: &str = "https://api.wandb.ai";
const LAMBDA_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Characters W&B refuses in run ids.
const RUN_ID_FORBIDDEN: &[char] = &[':', ';', ',', '#', '?', '/', '\''];
/// Characters W&B refuses in entity and project names.
const NAME_FORBIDDEN: &[char] = &['/', '\\', '#', '?', '%', ':'];
const NAME_MAX_LEN: usize = 128;

impl Settings {
    /// Resolves settings from arguments and an environment lookup (a function, so tests can
    /// pass a map instead of the process environment).
    pub fn resolve(args: InitArgs, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env_str = |name: &str| var(&env, name);
        let pick = |arg: Option<String>, name: &str| arg.or_else(|| env_str(name));

        let base_url = pick(args.base_url, "WANDB_BASE_URL")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let api_key = pick(args.api_key, "WANDB_API_KEY")
            .or_else(|| netrc_password(&base_url, &env))
            .map(ApiKey);
        let asked = pick(args.mode, "WANDB_MODE");
        let mode = parse_mode(asked.as_deref(), api_key.is_some())?;
        let keyless = mode == Mode::Offline && parse_mode(asked.as_deref(), true)? == Mode::Online;
        if mode == Mode::Online {
            parse_base_url(&base_url)?;
        }
        let seconds = |name: &str, default: Duration| -> Result<Duration, Error> {
            match env_str(name) {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        Error::Usage(format!("{name} must be a number of seconds, not {text:?}"))
                    }),
            }
        };
        let on_lambda = on_lambda(&env);
        let defaults = RetryPolicy::default();
        // On Lambda, time spent retrying is billed after every invocation during an outage;
        // what is not delivered in time is spooled and sent by the next invocation instead.
        let budget = if on_lambda {
            LAMBDA_RETRY_BUDGET
        } else {
            defaults.budget
        };
        let retry = RetryPolicy {
            budget: seconds("WANDB_NEXUS_RETRY_SECONDS", budget)?,
            wait_min: seconds("WANDB_NEXUS_RETRY_WAIT_MIN", defaults.wait_min)?,
            wait_max: seconds("WANDB_NEXUS_RETRY_WAIT_MAX", defaults.wait_max)?,
            attempt_timeout: seconds("WANDB_HTTP_TIMEOUT", defaults.attempt_timeout)?,
        };
        let transmit_interval = seconds(
            "WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL",
            Duration::from_secs(15),
        )?;
        let entity = pick(args.entity, "WANDB_ENTITY");
        let project = pick(args.project, "WANDB_PROJECT");
        check_name("entity", entity.as_deref())?;
        check_name("project", project.as_deref())?;
        let run_id = pick(args.id, "WANDB_RUN_ID");
        check_run_id(run_id.as_deref())?;
        let tags = match args.tags {
            Some(tags) => tags,
            None => env_str("WANDB_TAGS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let resume = parse_resume(pick(args.resume, "WANDB_RESUME").as_deref())?;
        let root_dir = match pick(args.dir, "WANDB_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => default_root_dir(on_lambda),
        };
        Ok(Self {
            mode,
            keyless,
            api_key,
            app_url: env_str("WANDB_APP_URL")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| app_url(&base_url)),
            retry,
            transmit_interval,
            heartbeat: seconds("WANDB_NEXUS_HEARTBEAT_SECONDS", Duration::from_secs(30))?,
            base_url,
            entity,
            project,
            run_id,
            display_name: pick(args.name, "WANDB_NAME"),
            notes: pick(args.notes, "WANDB_NOTES"),
            group: pick(args.group, "WANDB_RUN_GROUP"),
            job_type: pick(args.job_type, "WANDB_JOB_TYPE"),
            tags,
            resume,
            root_dir,
            defer_delivery: args.defer_delivery,
            on_lambda,
        })
    }
}

/// The base URL as a URL: http(s), with a host.
pub fn parse_base_url(base_url: &str) -> Result<reqwest::Url, Error> {
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        Error::Usage(format!(
            "WANDB_BASE_URL {base_url:?} is not a valid URL: {e}"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Usage(format!(
            "WANDB_BASE_URL {base_url:?} must be an http:// or https:// URL with a host"
        )));
    }
    Ok(url)
}

/// The W&B UI for an API server: `api.wandb.*` drops the `api.` label, other `api.` hosts
/// become `app.`, and anything else (a self-hosted server) serves both.
fn app_url(base_url: &str) -> String {
    if base_url.contains("://api.wandb.") {
        base_url.replacen("://api.", "://", 1)
    } else if base_url.contains("://api.") {
        base_url.replacen("://api.", "://app.", 1)
    } else {
        base_url.to_string()
    }
}

/// The password of the netrc entry for the base URL's host (`host:port` first), as `wandb
/// login` stores the API key. The file is only read.
pub fn netrc_password(base_url: &str, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let url = parse_base_url(base_url).ok()?;
    let host = url.host_str()?.to_string();
    let netloc = url.port().map(|port| format!("{host}:{port}"));
    let path = match env("NETRC").filter(|p| !p.is_empty()) {
        Some(path) => match (path.strip_prefix("~/"), env("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => PathBuf::from(path),
        },
        None => {
            let home = PathBuf::from(env("HOME")?);
            [".netrc", "_netrc"]
                .iter()
                .map(|name| home.join(name))
                .find(|p| p.is_file())?
        }
    };
    let text = std::fs::read_to_string(path).ok()?;
    netloc
        .and_then(|n| netrc_lookup(&text, &n))
        .or_else(|| netrc_lookup(&text, &host))
}

fn netrc_lookup(text: &str, machine: &str) -> Option<String> {
    let mut tokens = text.split_whitespace();
    let mut current: Option<bool> = None; // inside a stanza: does it match?
    let mut default_password = None;
    let mut in_default = false;
    while let Some(token) = tokens.next() {
        match token {
            "machine" => {
                current = Some(tokens.next()? == machine);
                in_default = false;
            }
            "default" => {
                current = None;
                in_default = true;
            }
            "password" => {
                let password = tokens.next()?.to_string();
                if current == Some(true) {
                    return Some(password);
                }
                if in_default {
                    default_password = Some(password);
                }
            }
            "login" | "account" => {
                tokens.next();
            }
            _ => {}
        }
    }
    default_password
}

/// Online needs a key; without one a run is kept offline, to be synced later.
fn parse_mode(mode: Option<&str>, have_key: bool) -> Result<Mode, Error> {
    let default = if have_key {
        Mode::Online
    } else {
        Mode::Offline
    };
    match mode.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("online" | "run") => Ok(default),
        Some("offline" | "dryrun") => Ok(Mode::Offline),
        Some("disabled") => Ok(Mode::Disabled),
        Some(other) => Err(Error::Usage(format!(
            "mode must be 'online', 'offline' or 'disabled', not {other:?}"
        ))),
    }
}

fn parse_resume(resume: Option<&str>) -> Result<Option<Resume>, Error> {
    match resume.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(None),
        Some("allow") => Ok(Some(Resume::Allow)),
        Some("must") => Ok(Some(Resume::Must)),
        Some("never") => Ok(Some(Resume::Never)),
        Some("auto" | "true") => Ok(Some(Resume::Auto)),
        Some(other) => Err(Error::Usage(format!(
            "resume must be 'allow', 'must', 'never', 'auto', True or False, not {other:?}"
        ))),
    }
}

fn check_name(what: &str, name: Option<&str>) -> Result<(), Error> {
    let Some(name) = name else { return Ok(()) };
    if name.trim().is_empty() || name.len() > NAME_MAX_LEN || name.contains(NAME_FORBIDDEN) {
        return Err(Error::Usage(format!(
            "invalid {what} name {name:?}: it must be 1 to {NAME_MAX_LEN} characters \
             without any of / \\ # ? % :"
        )));
    }
    Ok(())
}

pub fn check_run_id(id: Option<&str>) -> Result<(), Error> {
    let Some(id) = id else { return Ok(()) };
    if id.is_empty() || id.trim() != id || id.contains(RUN_ID_FORBIDDEN) || id.len() > NAME_MAX_LEN
    {
        return Err(Error::Usage(format!(
            "invalid run id {id:?}: it must be non-empty, without surrounding spaces, at most \
             {NAME_MAX_LEN} characters and without any of : ; , # ? / '"
        )));
    }
    Ok(())
}

/// The value of the variable `name`; an empty one counts as unset.
fn var(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// Running in AWS Lambda (or an emulation of it).
fn on_lambda(env: &impl Fn(&str) -> Option<String>) -> bool {
    ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API"]
        .iter()
        .any(|name| var(env, name).is_some())
}

/// Where artifact files are copied until they are uploaded: under `WANDB_DATA_DIR`, else
/// beside the runs (`<WANDB_DIR or its default>/wandb/`), so on Lambda under `/tmp`, where a
/// later sync of the run still finds them.
pub fn artifact_staging_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(data) = var(&env, "WANDB_DATA_DIR") {
        return PathBuf::from(data).join("artifacts").join("staging");
    }
    let root = var(&env, "WANDB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_root_dir(on_lambda(&env)));
    root.join("wandb").join("artifacts").join("staging")
}

/// Where a downloaded artifact goes by default: `WANDB_ARTIFACT_DIR`, else `artifacts/`
/// where runs go (the working directory, or `/tmp` on Lambda).
pub fn artifact_download_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    match var(&env, "WANDB_ARTIFACT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => default_root_dir(on_lambda(&env)).join("artifacts"),
    }
}

/// The cache of downloaded artifact files: `WANDB_CACHE_DIR`, else `~/.cache/wandb` (under
/// `/tmp` on Lambda, which keeps it across the warm invocations and cold starts of a sandbox).
pub fn cache_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = var(&env, "WANDB_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match var(&env, "HOME").map(PathBuf::from) {
        Some(home) if !on_lambda(&env) && is_writable(&home) => home.join(".cache").join("wandb"),
        _ => std::env::temp_dir().join(".cache").join("wandb"),
    }
}

/// On Lambda, or where the working directory is read-only, runs go under the temporary
/// directory (`$TMPDIR`, else /tmp: Lambda's only writable place).
fn default_root_dir(on_lambda: bool) -> PathBuf {
    let tmp = std::env::temp_dir();
    if on_lambda {
        return tmp;
    }
    match std::env::current_dir() {
        Ok(cwd) if is_writable(&cwd) => cwd,
        _ => tmp,
    }
}

/// Asks the kernel (access(2)) without creating anything, so read-only mounts count too.
pub fn is_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(args: InitArgs, env: &[(&str, &str)]) -> Result<Settings, Error> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(args, |name| env.get(name).cloned())
    }

    #[test]
    fn arguments_win_over_environment() {
        let args = InitArgs {
            project: Some("arg-project".into()),
            ..Default::default()
        };
        let s = resolve(
            args,
            &[
                ("WANDB_PROJECT", "env-project"),
                ("WANDB_ENTITY", "team"),
                ("WANDB_TAGS", "a, b,,c"),
            ],
        )
        .unwrap();
        assert_eq!(s.project.as_deref(), Some("arg-project"));
        assert_eq!(s.entity.as_deref(), Some("team"));
        assert_eq!(s.tags, vec!["a", "b", "c"]);
    }

    #[test]
    fn mode_defaults_to_offline_without_key() {
        let keyless = resolve(InitArgs::default(), &[]).unwrap();
        assert_eq!((keyless.mode, keyless.keyless), (Mode::Offline, true));
        let asked_online = resolve(InitArgs::default(), &[("WANDB_MODE", "online")]).unwrap();
        assert!(asked_online.keyless);
        let asked_offline = resolve(InitArgs::default(), &[("WANDB_MODE", "offline")]).unwrap();
        assert_eq!(
            (asked_offline.mode, asked_offline.keyless),
            (Mode::Offline, false)
        );
        let online = resolve(
            InitArgs::default(),
            &[("WANDB_API_KEY", "k".repeat(40).as_str())],
        );
        assert_eq!(online.unwrap().mode, Mode::Online);
        let forced = resolve(
            InitArgs::default(),
            &[("WANDB_API_KEY", "k"), ("WANDB_MODE", "dryrun")],
        );
        assert_eq!(forced.unwrap().mode, Mode::Offline);
        assert!(resolve(InitArgs::default(), &[("WANDB_MODE", "sideways")]).is_err());
    }

    #[test]
    fn lambda_defaults_root_to_the_temporary_directory() {
        let s = resolve(InitArgs::default(), &[("AWS_LAMBDA_FUNCTION_NAME", "f")]).unwrap();
        assert_eq!(s.root_dir, std::env::temp_dir());
        assert_eq!(s.retry.budget, LAMBDA_RETRY_BUDGET);
        let s = resolve(
            InitArgs::default(),
            &[("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")],
        );
        assert_eq!(s.unwrap().root_dir, std::env::temp_dir());
        let s = resolve(InitArgs::default(), &[]).unwrap();
        assert_eq!(s.retry.budget, RetryPolicy::default().budget);
        let s = resolve(
            InitArgs::default(),
            &[("AWS_LAMBDA_FUNCTION_NAME", "f"), ("WANDB_DIR", "/mnt/x")],
        )
        .unwrap();
        assert_eq!(s.root_dir, PathBuf::from("/mnt/x"));
    }

    #[test]
    fn rejects_bad_ids_and_names() {
        for id in ["", " x", "a/b", "a:b", "it's"] {
            let args = InitArgs {
                id: Some(id.into()),
                ..Default::default()
            };
            assert!(resolve(args, &[]).is_err(), "{id:?} accepted");
        }
        let args = InitArgs {
            project: Some("my/project".into()),
            ..Default::default()
        };
        let err = resolve(args, &[]).unwrap_err().to_string();
        assert!(err.contains("project"), "{err}");
    }

    #[test]
    fn netrc_supplies_the_key_for_the_base_url_host() {
        let dir = std::env::temp_dir().join(format!("netrc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let netrc = dir.join("netrc");
        std::fs::write(
            &netrc,
            "machine other.host login user password nope\n\
             machine 127.0.0.1:8080\n  login user\n  password from-netrc\n",
        )
        .unwrap();
        let path = netrc.display().to_string();
        let s = resolve(
            InitArgs::default(),
            &[
                ("NETRC", path.as_str()),
                ("WANDB_BASE_URL", "http://127.0.0.1:8080"),
            ],
        )
        .unwrap();
        assert_eq!(s.api_key.as_ref().map(ApiKey::expose), Some("from-netrc"));
        assert_eq!(s.mode, Mode::Online);
        let env_wins = resolve(
            InitArgs::default(),
            &[
                ("NETRC", path.as_str()),
                ("WANDB_BASE_URL", "http://127.0.0.1:8080"),
                ("WANDB_API_KEY", "from-env"),
            ],
        )
        .unwrap();
        assert_eq!(
            env_wins.api_key.as_ref().map(ApiKey::expose),
            Some("from-env")
        );
        let no_entry = resolve(InitArgs::default(), &[("NETRC", path.as_str())]).unwrap();
        assert!(no_entry.api_key.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn app_urls() {
        assert_eq!(app_url("https://api.wandb.ai"), "https://wandb.ai");
        assert_eq!(
            app_url("https://api.corp.example"),
            "https://app.corp.example"
        );
        assert_eq!(app_url("http://localhost:8080"), "http://localhost:8080");
    }

    #[test]
    fn malformed_base_url_is_refused_online() {
        let err = resolve(
            InitArgs::default(),
            &[("WANDB_API_KEY", "k"), ("WANDB_BASE_URL", "api.wandb.ai")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("WANDB_BASE_URL"), "{err}");
    }

    #[test]
    fn api_key_is_redacted_in_debug() {
        let s = resolve(
            InitArgs::default(),
            &[("WANDB_API_KEY", "secret-key-value")],
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("secret-key-value"));
    }
}
