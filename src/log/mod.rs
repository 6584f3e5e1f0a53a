//! The transaction log: the `Record` messages, the `.wandb` file format, and the writer
//! thread that turns a run's events into records on disk.

pub mod journal;
pub mod records;
pub mod txlog;
pub mod writer;
