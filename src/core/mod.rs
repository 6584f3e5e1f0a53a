//! The run as the user shapes it: values, settings, defined metrics, the run's state and
//! step semantics, and the process-wide facts and runtime they rest on.

pub mod metrics;
pub mod resume;
pub mod run;
pub mod runtime;
pub mod settings;
pub mod system;
pub mod values;
