//! What the W&B server is sent, derived from transaction-log records: history lines, the
//! whole summary, console lines and the config. The live writer and `sync` feed the same
//! records through here, so a run uploads the same way whether it is live or replayed.

use crate::records::{Item, OutputRawRecord, Record, RecordType, RunRecord};
use crate::system;
use crate::values::{Tree, Value};

pub const HISTORY_FILE: &str = "wandb-history.jsonl";
pub const SUMMARY_FILE: &str = "wandb-summary.json";
pub const CONSOLE_FILE: &str = "output.log";

/// Lines of one streamed file, with the line number of the first one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    pub offset: u64,
    pub lines: Vec<String>,
}

/// One file_stream request's worth of data. Its offsets are fixed when it is taken, so a
/// retried request carries exactly the same lines and the server never stores a row twice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub history: Chunk,
    pub summary: Option<String>,
    pub console: Chunk,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.history.lines.is_empty() && self.summary.is_none() && self.console.lines.is_empty()
    }
}

#[derive(Default)]
pub struct RunStream {
    /// The run record, as first seen (the run's identity and initial settings).
    pub run: Option<RunRecord>,
    pub config: Tree,
    config_changed: bool,
    summary: Tree,
    summary_changed: bool,
    /// Lines not yet acknowledged by the server, the first at line number `history_sent`.
    history: Vec<String>,
    history_sent: u64,
    console: Vec<String>,
    console_sent: u64,
    /// Text after the last newline, and the time stamp of the last chunk, per stream
    /// (stdout, stderr).
    partial_line: [String; 2],
    last_stamp: [String; 2],
    pub exit_code: Option<i32>,
}

impl RunStream {
    /// Starts history at `offset` (the server's `historyLineCount` for a run that has rows);
    /// called before anything was acknowledged.
    pub fn start_history_at(&mut self, offset: u64) {
        self.history_sent = offset;
    }

    pub fn apply(&mut self, record: &Record) {
        let Some(kind) = &record.record_type else {
            return;
        };
        match kind {
            RecordType::Run(run) => {
                if let Some(config) = &run.config {
                    self.merge_config(&config.update);
                }
                self.run.get_or_insert_with(|| run.clone());
            }
            RecordType::Config(config) => self.merge_config(&config.update),
            RecordType::Summary(summary) => {
                for item in &summary.update {
                    self.summary.set(&item.path(), parse_item(item));
                }
                for item in &summary.remove {
                    self.summary.remove(&item.path());
                }
                self.summary_changed = true;
            }
            RecordType::History(history) => {
                let mut row = Tree::default();
                for item in &history.item {
                    row.merge(&item.path(), parse_item(item));
                }
                self.history.push(row.to_json());
            }
            RecordType::OutputRaw(output) => self.add_output(output),
            RecordType::Exit(exit) => {
                self.flush_partial_lines();
                self.exit_code = Some(exit.exit_code);
            }
            _ => {}
        }
    }

    fn merge_config(&mut self, items: &[Item]) {
        for item in items {
            self.config.merge(&item.path(), parse_item(item));
        }
        self.config_changed = true;
    }

    /// Console chunks become whole lines, stamped as wandb stamps them (UTC, microseconds);
    /// stderr lines carry the `ERROR ` prefix.
    fn add_output(&mut self, output: &OutputRawRecord) {
        let stderr = output.output_type == 0;
        let stream = usize::from(stderr);
        if let Some(t) = output.timestamp {
            self.last_stamp[stream] = system::utc_console_stamp(t.seconds, t.nanos);
        }
        let stamp = &self.last_stamp[stream];
        let partial = &mut self.partial_line[stream];
        partial.push_str(&output.line);
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let text = line.trim_end_matches(['\n', '\r']);
            let prefix = if stderr { "ERROR " } else { "" };
            self.console.push(format!("{prefix}{stamp} {text}"));
        }
    }

    fn flush_partial_lines(&mut self) {
        for stderr in [false, true] {
            if !self.partial_line[usize::from(stderr)].is_empty() {
                let rest = std::mem::take(&mut self.partial_line[usize::from(stderr)]);
                self.add_output(&OutputRawRecord {
                    output_type: i32::from(!stderr),
                    timestamp: None,
                    line: rest + "\n",
                });
            }
        }
    }

    /// The data not yet acknowledged by the server. Calling it again before `acknowledge`
    /// returns the same lines at the same offsets, plus anything newer.
    pub fn pending(&self) -> Batch {
        Batch {
            history: Chunk {
                offset: self.history_sent,
                lines: self.history.clone(),
            },
            summary: self.summary_changed.then(|| self.summary.to_json()),
            console: Chunk {
                offset: self.console_sent,
                lines: self.console.clone(),
            },
        }
    }

    /// Marks a batch (taken by `pending` since the last acknowledgement) as stored by the
    /// server, and drops its lines.
    pub fn acknowledge(&mut self, batch: &Batch) {
        let history_done = batch.history.lines.len().min(self.history.len());
        self.history.drain(..history_done);
        self.history_sent += history_done as u64;
        let console_done = batch.console.lines.len().min(self.console.len());
        self.console.drain(..console_done);
        self.console_sent += console_done as u64;
        if batch.summary.as_deref() == Some(self.summary.to_json().as_str()) {
            self.summary_changed = false;
        }
    }

    /// The config changed since it was last sent.
    pub fn config_changed(&self) -> bool {
        self.config_changed
    }

    /// The server acknowledged the config as it is now.
    pub fn config_sent(&mut self) {
        self.config_changed = false;
    }
}

/// An item's value; text that is not JSON is kept as a string rather than dropped.
fn parse_item(item: &Item) -> Value {
    Value::parse_json(&item.value_json).unwrap_or_else(|_| Value::Str(item.value_json.clone()))
}

/// `{"key": {"value": v}, ...}`: the config as W&B stores it, with `_wandb` included.
pub fn config_json(config: &Tree) -> String {
    let Value::Map(entries) = config.to_value() else {
        unreachable!("a tree is a map")
    };
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key, Value::Map(vec![("value".to_string(), value)])))
            .collect(),
    )
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{HistoryRecord, ItemUpdates, RunExitRecord, Timestamp};

    fn item(path: &[&str], json: &str) -> Item {
        Item {
            key: String::new(),
            nested_key: path.iter().map(|s| s.to_string()).collect(),
            value_json: json.into(),
        }
    }

    fn record(kind: RecordType) -> Record {
        Record {
            num: 0,
            record_type: Some(kind),
            info: None,
        }
    }

    fn history(step: i64) -> Record {
        record(RecordType::History(HistoryRecord {
            item: vec![item(&["d", "x"], "1"), item(&["_step"], &step.to_string())],
            step: None,
        }))
    }

    fn output(stderr: bool, text: &str) -> Record {
        record(RecordType::OutputRaw(OutputRawRecord {
            output_type: i32::from(!stderr),
            timestamp: Some(Timestamp {
                seconds: 1_795_594_588,
                nanos: 138_892_000,
            }),
            line: text.into(),
        }))
    }

    #[test]
    fn history_rows_become_nested_json_lines() {
        let mut stream = RunStream::default();
        stream.apply(&history(0));
        assert_eq!(
            stream.pending().history.lines,
            vec![r#"{"d":{"x":1},"_step":0}"#]
        );
    }

    #[test]
    fn retried_batches_keep_offsets_and_acknowledged_lines_are_dropped() {
        let mut stream = RunStream::default();
        stream.start_history_at(5);
        stream.apply(&history(0));
        let first = stream.pending();
        stream.apply(&history(1));
        // A retry before acknowledgement still starts at the same offset.
        let retry = stream.pending();
        assert_eq!((first.history.offset, retry.history.offset), (5, 5));
        assert_eq!(retry.history.lines.len(), 2);
        stream.acknowledge(&first);
        let next = stream.pending();
        assert_eq!(next.history.offset, 6);
        assert_eq!(next.history.lines, vec![r#"{"d":{"x":1},"_step":1}"#]);
        stream.acknowledge(&next);
        assert!(stream.pending().is_empty());
    }

    #[test]
    fn console_chunks_become_stamped_lines() {
        let mut stream = RunStream::default();
        stream.apply(&output(false, "hello "));
        stream.apply(&output(false, "stdout\n"));
        stream.apply(&output(true, "oops\nnot yet"));
        stream.apply(&record(RecordType::Exit(RunExitRecord {
            exit_code: 0,
            runtime: 0,
        })));
        assert_eq!(
            stream.pending().console.lines,
            vec![
                "2026-11-25T08:16:28.138892 hello stdout",
                "ERROR 2026-11-25T08:16:28.138892 oops",
                "ERROR 2026-11-25T08:16:28.138892 not yet",
            ]
        );
    }

    #[test]
    fn summary_and_config_follow_their_records() {
        let mut stream = RunStream::default();
        stream.apply(&record(RecordType::Summary(ItemUpdates {
            update: vec![item(&["loss"], "0.5"), item(&["d"], r#"{"x":NaN}"#)],
            remove: vec![],
        })));
        stream.apply(&record(RecordType::Config(ItemUpdates {
            update: vec![item(&["opt"], r#"{"lr":0.1}"#)],
            remove: vec![],
        })));
        stream.apply(&record(RecordType::Config(ItemUpdates {
            update: vec![item(&["opt"], r#"{"beta":2}"#)],
            remove: vec![],
        })));
        let batch = stream.pending();
        assert_eq!(
            batch.summary.as_deref(),
            Some(r#"{"loss":0.5,"d":{"x":NaN}}"#)
        );
        stream.acknowledge(&batch);
        assert_eq!(stream.pending().summary, None);
        assert!(stream.config_changed());
        stream.config_sent();
        assert!(!stream.config_changed());
        assert_eq!(
            config_json(&stream.config),
            r#"{"opt":{"value":{"lr":0.1,"beta":2}}}"#
        );
    }
}
