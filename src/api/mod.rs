//! The W&B API: the HTTP transport and its TLS setup, what file_stream is sent (derived from
//! records), and delivery of a run, live or from its log.

pub mod artifacts;
pub mod delivery;
pub mod file_stream;
pub mod tls;
pub mod transport;
