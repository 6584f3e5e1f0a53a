//! The external extension: the `wandb-nexus` executable in the layer's `extensions/`, its own
//! process beside the runtime. It registers for SHUTDOWN only, so it takes no part in
//! invocations (no billed time, no latency), and sleeps in `event/next` until the runtime is
//! shut down: at an invocation's timeout, a runtime crash, or the environment's end. Then it
//! delivers, within the shutdown deadline, every run the runtime left under the root
//! directory, and exits.
//!
//! It must never fail the environment: Lambda restarts an environment whose extension fails
//! during init, and on Managed Instances an extension that exits kills it. So unless the API
//! refuses it (its registration, or its call for the next event), it registers, waits for
//! SHUTDOWN whatever its settings, delivers what it can, and exits 0; a bad run costs a line
//! on stderr, never the process.

use std::collections::BTreeSet;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Duration;

use super::extensions_api::{Event, EventType, ExtensionsApi, Registration, ShutdownReason};
use super::shutdown_deadline;
use super::spool::{self, HeldLogs};
use crate::aws::secrets;
use crate::core::settings::{InitArgs, Mode, Settings};
use crate::error::Error;

/// Lambda requires an external extension to register under its executable's file name.
pub const NAME: &str = "wandb-nexus";
/// `off` (or `false`, `0`) turns delivery off. The extension still registers and waits: one
/// that exits during init fails the environment's init (Lambda reports Extension.Crash).
const SWITCH: &str = "WANDB_NEXUS_EXTENSION";
/// The longest pause between attempts at `event/next` while the API cannot be reached.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

/// The extension's whole life; the executable's `main`.
pub fn main() -> ExitCode {
    // One line per panic; each is caught where it would cost more than one run's delivery.
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        say(&format!("bug{at}: {}", super::panic_text(info.payload())));
    }));
    let api = match ExtensionsApi::from_env() {
        Ok(Some(api)) => api,
        Ok(None) => {
            say("AWS_LAMBDA_RUNTIME_API is not set: this is a Lambda extension, run by Lambda");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            say(&err.to_string());
            return ExitCode::SUCCESS;
        }
    };
    // First, before anything slow: Lambda starts the runtime only once every extension has
    // registered.
    let registration = match api.register(NAME, &[EventType::Shutdown]) {
        Ok(registration) => registration,
        Err(err) => {
            // No init/error call: that would fail the function's init on purpose, and a W&B
            // helper must never stop the function. Runs left behind are synced by a later
            // invocation's sweep instead.
            say(&format!("not registered ({err}); runs left by a failed runtime are delivered by a later invocation"));
            return ExitCode::SUCCESS;
        }
    };
    let settings_from = |key_from| {
        let env = |name: &str| std::env::var(name).ok();
        panic::catch_unwind(|| delivery_settings(env, key_from))
            .unwrap_or_else(|_| Err("cannot read its settings".into()))
            .inspect_err(|why| say(&format!("{why}; it delivers nothing")))
            .ok()
    };
    let settings = settings_from(KeyFrom::EnvironmentOnly);
    let Some((reason, deadline_ms)) = wait_for_shutdown(&registration) else {
        return ExitCode::FAILURE;
    };
    // A key kept in AWS is fetched now, when there is something to deliver, not during INIT.
    let settings = match settings {
        Some(None) => settings_from(KeyFrom::Aws).flatten(),
        other => other.flatten(),
    };
    if let Some(settings) = settings {
        let started = std::time::Instant::now();
        let delivered = panic::catch_unwind(AssertUnwindSafe(|| {
            deliver_left_runs(&settings, &reason, deadline_ms)
        }));
        if delivered.is_err() {
            say("delivery stopped; runs not delivered are left in place");
        }
        // What it cost, for the function's log: the extension's memory counts in the
        // function's.
        say(&format!(
            "SHUTDOWN handled in {} ms; peak memory {}",
            started.elapsed().as_millis(),
            peak_memory().unwrap_or_else(|| "unknown".into())
        ));
    }
    ExitCode::SUCCESS
}

/// This process's peak resident memory (VmHWM), as "3.9 MiB".
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} MiB", kib / 1024.0))
}

/// One line on stderr, in one write: Lambda collects the extension's and the runtime's
/// output together, and a line written in pieces can be split by theirs.
fn say(line: &str) {
    let line = format!("wandb-nexus extension: {line}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Where `delivery_settings` may take the API key from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyFrom {
    /// `WANDB_API_KEY` only: no request is made.
    EnvironmentOnly,
    /// Also the secret the environment names (`crate::aws::secrets`).
    Aws,
}

/// The settings to deliver with, resolved from the environment as the Python module
/// resolves them; or why this extension does nothing. None when the key is kept in AWS and
/// `key_from` allows no request.
fn delivery_settings(
    env: impl Fn(&str) -> Option<String>,
    key_from: KeyFrom,
) -> Result<Option<Settings>, String> {
    if let Some(value) = env(SWITCH)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| ["off", "false", "0"].contains(&v.as_str()))
    {
        return Err(format!("turned off by {SWITCH}={value}"));
    }
    let api_key = match key_from {
        KeyFrom::Aws => secrets::api_key(&env, None).map_err(|err| err.to_string())?,
        KeyFrom::EnvironmentOnly => None,
    };
    let args = InitArgs {
        api_key,
        ..InitArgs::default()
    };
    let settings = Settings::resolve(args, &env)
        .map_err(|err| format!("the W&B settings are not usable ({err})"))?;
    if settings.api_key.is_none() {
        if key_from == KeyFrom::EnvironmentOnly && secrets::KeySource::from_env(&env).is_some() {
            return Ok(None);
        }
        return Err(format!(
            "no W&B API key (WANDB_API_KEY): runs left behind stay under {}",
            settings.root_dir.join("wandb").display()
        ));
    }
    if settings.mode != Mode::Online {
        let mode = format!("{:?}", settings.mode).to_lowercase();
        return Err(format!("WANDB_MODE is {mode}"));
    }
    Ok(Some(settings))
}

/// Waits in `event/next` for SHUTDOWN: its reason and deadline (Unix ms). None when the API
/// refused the call (after telling Lambda why this extension exits). An API that cannot be
/// reached is tried again: exiting early would fail the environment.
fn wait_for_shutdown(registration: &Registration) -> Option<(ShutdownReason, u64)> {
    let mut retry_wait = Duration::from_millis(10);
    let mut said = false;
    loop {
        match registration.next_event() {
            Ok(Event::Shutdown {
                reason,
                deadline_ms,
            }) => return Some((reason, deadline_ms)),
            // Not registered for invocations: nothing to do with one.
            Ok(Event::Invoke { .. }) => {}
            Err(Error::Unavailable(err)) => {
                if !said {
                    say(&format!("{err}; trying again"));
                    said = true;
                }
                std::thread::sleep(retry_wait);
                retry_wait = (retry_wait * 2).min(MAX_RETRY_WAIT);
            }
            Err(err) => {
                say(&err.to_string());
                registration.exit_error("Extension.EventFailed", &err.to_string());
                return None;
            }
        }
    }
}

/// Why the runs a runtime left open ended, in their console.
fn left_by(reason: &ShutdownReason) -> &'static str {
    match reason {
        ShutdownReason::Timeout => "the invocation timed out",
        ShutdownReason::Failure => "the runtime process failed",
        ShutdownReason::Spindown | ShutdownReason::Other(_) => {
            "the execution environment was shut down"
        }
    }
}

fn deliver_left_runs(settings: &Settings, reason: &ShutdownReason, deadline_ms: u64) {
    let deadline = shutdown_deadline(deadline_ms);
    let mut problems = Vec::new();
    // Held logs are waited for: the runtime is being shut down, and its locks go with it.
    let held = HeldLogs::WaitUntilDeadline;
    spool::sweep(
        settings,
        &BTreeSet::new(),
        left_by(reason),
        deadline,
        held,
        &mut problems,
    );
    for problem in problems {
        say(&problem);
    }
}

#[cfg(test)]
mod tests {
    use super::super::extensions_api::fake::{answer, serve};
    use super::*;

    fn registered(next: Vec<String>) -> (Registration, std::sync::mpsc::Receiver<String>) {
        let id = "Lambda-Extension-Identifier: id-1\r\n";
        let answers = [vec![answer("200 OK", id, "{}")], next].concat();
        let (api, requests) = serve(answers);
        let registration = api.register(NAME, &[EventType::Shutdown]).unwrap();
        requests.recv().unwrap();
        (registration, requests)
    }

    #[test]
    fn it_waits_through_invocations_and_a_dropped_call_for_shutdown() {
        let shutdown = r#"{"eventType":"SHUTDOWN","shutdownReason":"FAILURE","deadlineMs":7}"#;
        let (registration, _requests) = registered(vec![
            answer(
                "200 OK",
                "",
                r#"{"eventType":"INVOKE","requestId":"r","deadlineMs":1}"#,
            ),
            String::new(), // the connection closes unanswered
            answer("200 OK", "", shutdown),
        ]);
        let event = wait_for_shutdown(&registration);
        assert_eq!(event, Some((ShutdownReason::Failure, 7)));
    }

    #[test]
    fn an_api_that_refuses_the_next_call_is_told_why_it_exits() {
        let (registration, requests) = registered(vec![
            answer("500 Internal Server Error", "", r#"{"errorType":"x"}"#),
            answer("202 Accepted", "", "{}"),
        ]);
        assert_eq!(wait_for_shutdown(&registration), None);
        requests.recv().unwrap(); // event/next
        let exit_error = requests.recv().unwrap();
        assert!(exit_error.starts_with("POST /2020-01-01/extension/exit/error HTTP/1.1\r\n"));
        assert!(
            exit_error.contains("Lambda-Extension-Function-Error-Type: Extension.EventFailed\r\n")
        );
        assert!(exit_error.contains("Lambda-Extension-Identifier: id-1\r\n"));
    }

    fn settings_with(vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let env = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        delivery_settings(env, KeyFrom::EnvironmentOnly)
    }

    #[test]
    fn a_key_kept_in_aws_is_left_for_shutdown_without_a_request() {
        let vars = [
            ("WANDB_API_KEY_SECRET_ARN", "wandb"),
            ("AWS_REGION", "us-east-1"),
        ];
        assert!(settings_with(&vars).unwrap().is_none());
    }

    #[test]
    fn it_delivers_only_online_with_a_key_and_not_turned_off() {
        let key = "k".repeat(40);
        let online = settings_with(&[("WANDB_API_KEY", &key), ("WANDB_DIR", "/tmp/x")]);
        let online = online.unwrap().unwrap();
        assert_eq!(online.root_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(
            online.api_key.as_ref().map(|k| k.expose()),
            Some(key.as_str())
        );
        let said = settings_with(&[("WANDB_DIR", "/tmp/x")]).unwrap_err();
        assert!(
            said.contains("no W&B API key") && said.contains("/tmp/x/wandb"),
            "{said}"
        );
        let said = settings_with(&[("WANDB_API_KEY", &key), ("WANDB_MODE", "offline")]);
        assert_eq!(said.unwrap_err(), "WANDB_MODE is offline");
        for off in ["off", "OFF", " false", "0"] {
            let said = settings_with(&[("WANDB_API_KEY", &key), (SWITCH, off)]).unwrap_err();
            assert!(
                said.starts_with("turned off by WANDB_NEXUS_EXTENSION="),
                "{said}"
            );
        }
        assert!(settings_with(&[("WANDB_API_KEY", &key), (SWITCH, "on")]).is_ok());
        let said = settings_with(&[("WANDB_API_KEY", &key), ("WANDB_MODE", "sideways")]);
        assert!(said.unwrap_err().contains("not usable"));
    }

    #[test]
    fn messages_never_carry_the_key() {
        let key = "secret".repeat(7);
        for vars in [
            &[("WANDB_API_KEY", key.as_str()), ("WANDB_MODE", "offline")][..],
            &[("WANDB_API_KEY", key.as_str()), ("WANDB_MODE", "sideways")][..],
            &[
                ("WANDB_API_KEY", key.as_str()),
                ("WANDB_BASE_URL", "ftp://x"),
            ][..],
        ] {
            let said = settings_with(vars).unwrap_err();
            assert!(!said.contains(&key), "{said}");
        }
    }

    #[test]
    fn each_reason_says_why_the_runs_ended() {
        assert_eq!(
            left_by(&ShutdownReason::Timeout),
            "the invocation timed out"
        );
        assert_eq!(
            left_by(&ShutdownReason::Failure),
            "the runtime process failed"
        );
        let other = ShutdownReason::Other("NEW".into());
        assert_eq!(left_by(&other), left_by(&ShutdownReason::Spindown));
    }
}
