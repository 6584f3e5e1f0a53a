//! One error type for the core, and (with the `python` feature) its single mapping onto the
//! Python exception hierarchy of `wandb_nexus.errors` (whose classes also subclass the stdlib
//! ones users catch).

use std::io;

#[cfg(feature = "python")]
use pyo3::{exceptions::PyRuntimeError, prelude::*, sync::PyOnceLock, types::PyType};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller used the API wrongly (bad argument, finished run, ...).
    #[error("{0}")]
    Usage(String),
    /// A call that needs W&B, made by a run that is offline.
    #[error("{0}")]
    Offline(String),
    /// A value that cannot be logged.
    #[error("cannot {action}{}: {reason}", key_part(key))]
    UnsupportedValue {
        /// What was being done: "log", "set config", "set summary".
        action: &'static str,
        key: String,
        reason: String,
    },
    /// A value of the right type that cannot be used (a malformed image, a bad table row).
    #[error("{0}")]
    InvalidValue(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The server refused the credentials.
    #[error("{0}")]
    Auth(String),
    /// The W&B API answered with an error that retrying will not fix.
    #[error("{0}")]
    Comm(String),
    /// The W&B API could not be reached, or kept failing, until the retry budget ran out.
    #[error("{0}")]
    Unavailable(String),
    /// A Python exception raised while converting user data; re-raised unchanged.
    #[cfg(feature = "python")]
    #[error("{0}")]
    Python(PyErr),
}

/// ` "a.b"` for a value under a key; nothing when the problem is the whole argument.
fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key:?}")
    }
}

impl Error {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidValue(reason.into())
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The same error with what it happened in (an artifact, one of its files) said first.
    pub fn within(self, context: &str) -> Self {
        let said = |text: String| format!("{context}: {text}");
        match self {
            Error::Usage(text) => Error::Usage(said(text)),
            Error::Offline(text) => Error::Offline(said(text)),
            Error::InvalidValue(text) => Error::InvalidValue(said(text)),
            Error::Auth(text) => Error::Auth(said(text)),
            Error::Comm(text) => Error::Comm(said(text)),
            Error::Unavailable(text) => Error::Unavailable(said(text)),
            Error::Io {
                context: inner,
                source,
            } => Error::io(said(inner), source),
            other => other,
        }
    }
}

#[cfg(feature = "python")]
impl From<PyErr> for Error {
    fn from(err: PyErr) -> Self {
        Error::Python(err)
    }
}

/// Looks a class up in `wandb_nexus.errors` once; import time stays free of this work.
#[cfg(feature = "python")]
fn error_class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "wandb_nexus.errors", name)
}

#[cfg(feature = "python")]
impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        static USAGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static OFFLINE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static VALUE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static RUN_IO: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static AUTH: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static COMM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static INVALID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        Python::attach(|py| {
            let (cell, name) = match err {
                Error::Python(inner) => return inner,
                Error::Usage(_) => (&USAGE, "UsageError"),
                Error::Offline(_) => (&OFFLINE, "OfflineError"),
                Error::UnsupportedValue { .. } => (&VALUE, "UnsupportedValueError"),
                Error::InvalidValue(_) => (&INVALID, "InvalidValueError"),
                Error::Io { .. } => (&RUN_IO, "RunIOError"),
                Error::Auth(_) => (&AUTH, "AuthenticationError"),
                Error::Comm(_) | Error::Unavailable(_) => (&COMM, "CommError"),
            };
            let message = err.to_string();
            match error_class(py, cell, name) {
                Ok(class) => PyErr::from_type(class.clone(), message),
                Err(import_error) => PyRuntimeError::new_err(format!(
                    "{message} (and wandb_nexus.errors could not be imported: {import_error})"
                )),
            }
        })
    }
}
