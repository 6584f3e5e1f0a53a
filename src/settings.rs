//! Run settings: `init()` arguments first, then `WANDB_*` environment variables, then
//! defaults (wandb-protocol.md §1.4), validated once.

use std::fmt;
use std::path::{Path, PathBuf};

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

/// The API key. It is only ever handed to the transport; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
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
}

pub const DEFAULT_BASE_URL: &str = "https://api.wandb.ai";

/// Characters W&B refuses in run ids.
const RUN_ID_FORBIDDEN: &[char] = &[':', ';', ',', '#', '?', '/', '\''];
/// Characters W&B refuses in entity and project names.
const NAME_FORBIDDEN: &[char] = &['/', '\\', '#', '?', '%', ':'];
const NAME_MAX_LEN: usize = 128;

impl Settings {
    /// Resolves settings from arguments and an environment lookup (a function, so tests can
    /// pass a map instead of the process environment).
    pub fn resolve(args: InitArgs, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env_str = |name: &str| env(name).filter(|v| !v.is_empty());
        let pick = |arg: Option<String>, name: &str| arg.or_else(|| env_str(name));

        let api_key = env_str("WANDB_API_KEY").map(ApiKey);
        let mode = parse_mode(pick(args.mode, "WANDB_MODE").as_deref(), api_key.is_some())?;
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
            None => default_root_dir(env_str("AWS_LAMBDA_FUNCTION_NAME").is_some()),
        };
        Ok(Self {
            mode,
            api_key,
            base_url: env_str("WANDB_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
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
        })
    }
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

fn check_run_id(id: Option<&str>) -> Result<(), Error> {
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
        assert_eq!(
            resolve(InitArgs::default(), &[]).unwrap().mode,
            Mode::Offline
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
    fn api_key_is_redacted_in_debug() {
        let s = resolve(
            InitArgs::default(),
            &[("WANDB_API_KEY", "secret-key-value")],
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("secret-key-value"));
    }
}
