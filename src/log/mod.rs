//! The transaction log: the `Record` messages, the `.wandb` file format, the writer thread
//! that turns a run's events into records on disk, and the lock between a log's writer and
//! its deliverers.

pub mod journal;
pub mod lock;
pub mod records;
pub mod txlog;
pub mod writer;
