//! The W&B API: the HTTP transport and its TLS setup, what file_stream is sent (derived from
//! records), and delivery of a run, live or from its log.

pub mod artifacts;
pub mod delivery;
pub mod file_stream;
pub mod tls;
pub mod transport;

/// A record's text field as GraphQL takes it: empty is unset (null).
pub(crate) fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}
