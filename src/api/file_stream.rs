//! What the W&B server is sent, derived from transaction-log records: history lines, the
//! whole summary, console lines and the config. The live writer and `sync` feed the same
//! records through here, so a run uploads the same way whether it is live or replayed.

use crate::artifact::Artifact;
use crate::core::system;
use crate::core::values::{Tree, Value};
use crate::log::records::{
    usable, AlertRecord, HistoryRecord, Item, MetricRecord, OutputRawRecord, Record, RecordType,
    RunRecord,
};

pub const HISTORY_FILE: &str = "wandb-history.jsonl";
pub const SUMMARY_FILE: &str = "wandb-summary.json";
pub const CONSOLE_FILE: &str = "output.log";

/// W&B's file_stream limits (wandb-protocol.md §3.8): the largest request body, and the
/// longest line in it. A line is measured as it travels, JSON-escaped (see `line_cost`), so
/// every line that is sent fits in a request with room to spare for the rest of the body.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_LINE_BYTES: usize = MAX_REQUEST_BYTES - 100 * 1024;
/// How much of a request's lines `pending` may take: all but room for the field names,
/// offsets and exit code around them.
pub const REQUEST_LINE_BYTES: usize = MAX_REQUEST_BYTES - 1024;

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

/// A line waiting to be sent, and what it adds to a request body (see `line_cost`).
struct Line {
    text: String,
    cost: usize,
}

impl Line {
    fn new(text: String) -> Self {
        let cost = line_cost(&text);
        Self { text, cost }
    }
}

#[derive(Default)]
pub struct RunStream {
    /// The run record, as first seen (the run's identity and initial settings).
    pub run: Option<RunRecord>,
    /// A later run record changed the name, notes, tags, group or job type.
    run_changed: bool,
    pub config: Tree,
    config_changed: bool,
    /// Defined metrics, in the order defined; the config's `_wandb.m` lists them.
    pub metrics: Vec<MetricRecord>,
    /// Alerts not yet sent.
    pub alerts: Vec<AlertRecord>,
    /// Artifacts the run used whose use W&B has not been told of (their server ids).
    pub uses: Vec<String>,
    /// Saved files to upload while the run is live: policy `now` (once, not yet sent) and
    /// `live` (whenever they change); every file goes at finish too.
    pub files_now: Vec<String>,
    pub files_live: Vec<String>,
    /// Artifacts (logged tables) not yet saved.
    pub artifacts: Vec<Artifact>,
    /// The step after the last row's: where an artifact logged now belongs.
    next_step: i64,
    /// Rows logged before this step are renumbered to it (a resumed run's log replayed by
    /// sync, as wandb's sync does): steps never go back on the server.
    step_floor: Option<i64>,
    summary: Tree,
    summary_changed: bool,
    /// The summary as a line, once one was made of it; `None` again when it changes.
    summary_line: Option<Line>,
    /// Lines not yet acknowledged by the server, the first at line number `history_sent`.
    history: Vec<Line>,
    history_sent: u64,
    console: Vec<Line>,
    console_sent: u64,
    /// Text after the last newline, and the time stamp of the last chunk, per stream
    /// (stdout, stderr).
    partial_line: [String; 2],
    last_stamp: [String; 2],
    pub exit_code: Option<i32>,
    /// A line over `MAX_LINE_BYTES` was skipped, and the user told so; later ones are
    /// skipped without another warning.
    skipped_a_line: bool,
}

impl RunStream {
    /// The alerts and uses `send_notices` sent are no longer pending.
    pub fn notices_sent(&mut self) {
        self.alerts.clear();
        self.uses.clear();
    }

    /// The stream of a run that has only its record and config so far.
    pub fn for_run(run: &RunRecord, config: &Tree) -> Self {
        Self {
            run: Some(run.clone()),
            config: config.clone(),
            ..Self::default()
        }
    }

    /// Starts history at `offset` (the server's `historyLineCount` for a run that has rows);
    /// called before anything was acknowledged.
    pub fn start_history_at(&mut self, offset: u64) {
        self.history_sent = offset;
    }

    /// Starts the console at `offset` (a resumed run's `logLineCount`), so earlier lines stay.
    pub fn start_console_at(&mut self, offset: u64) {
        self.console_sent = offset;
    }

    /// Renumbers rows below `step` (see `step_floor`); called before records are applied.
    pub fn renumber_steps_from(&mut self, step: i64) {
        self.step_floor = Some(step);
    }

    /// The run record's name, notes, tags, group and job type changed since last sent.
    pub fn run_changed(&self) -> bool {
        self.run_changed
    }

    pub fn run_sent(&mut self) {
        self.run_changed = false;
    }

    pub fn apply(&mut self, record: &Record) {
        let Some(kind) = &record.record_type else {
            return;
        };
        match kind {
            RecordType::Run(run) => match &mut self.run {
                None => {
                    if let Some(config) = &run.config {
                        self.merge_config(&config.update);
                    }
                    self.run = Some(run.clone());
                }
                // A later record sets fields; its config is not the run's any more.
                Some(current) => {
                    current.display_name.clone_from(&run.display_name);
                    current.notes.clone_from(&run.notes);
                    current.tags.clone_from(&run.tags);
                    current.run_group.clone_from(&run.run_group);
                    current.job_type.clone_from(&run.job_type);
                    self.run_changed = true;
                }
            },
            RecordType::Metric(metric) => {
                let same = |m: &&mut MetricRecord| {
                    m.name == metric.name && m.glob_name == metric.glob_name
                };
                match self.metrics.iter_mut().find(same) {
                    Some(defined) => defined.clone_from(metric),
                    None => self.metrics.push(metric.clone()),
                }
                self.config_changed = true;
            }
            RecordType::Alert(alert) => self.alerts.push(alert.clone()),
            RecordType::UseArtifact(used) => self.uses.push(used.id.clone()),
            RecordType::Artifact(artifact) => {
                // Written just before the row that logs it: the step that row is at.
                let mut artifact = Artifact::from(artifact);
                artifact.history_step = Some(self.next_step);
                self.artifacts.push(artifact);
            }
            RecordType::Files(files) => {
                for file in &files.files {
                    // NOW 0, END 1, LIVE 2.
                    let list = match file.policy {
                        0 => &mut self.files_now,
                        2 => &mut self.files_live,
                        _ => continue,
                    };
                    if !list.contains(&file.path) {
                        list.push(file.path.clone());
                    }
                }
            }
            RecordType::Config(config) => self.merge_config(&config.update),
            RecordType::Summary(summary) => {
                for item in usable(&summary.update) {
                    self.summary.set(&item.path(), item.value());
                }
                if let Some(floor) = self.step_floor {
                    // The summary's step is that of the last row, as renumbered.
                    let key = ["_step".to_string()];
                    if self.summary.get(&key).is_some() {
                        self.summary.set(&key, Value::Int(floor - 1));
                    }
                }
                for item in usable(&summary.remove) {
                    self.summary.remove(&item.path());
                }
                self.summary_changed = true;
                self.summary_line = None;
            }
            RecordType::History(history) => {
                let mut row = Tree::default();
                for item in usable(&history.item) {
                    row.merge(&item.path(), item.value());
                }
                self.renumber(&mut row);
                if let Some(Value::Int(step)) =
                    row.get(&["_step".to_string()]).map(|n| n.to_value())
                {
                    self.next_step = step + 1;
                }
                let line = Line::new(row.to_json());
                if self.fits_a_line(&line, || {
                    format!("the history row of step {}", step(history))
                }) {
                    self.history.push(line);
                }
            }
            RecordType::OutputRaw(output) => self.add_output(output),
            RecordType::Exit(exit) => {
                self.flush_partial_lines();
                self.exit_code = Some(exit.exit_code);
            }
            _ => {}
        }
    }

    /// Raises a row's `_step` to the floor, which then moves past it.
    fn renumber(&mut self, row: &mut Tree) {
        let Some(floor) = self.step_floor else {
            return;
        };
        let key = ["_step".to_string()];
        let step = row.get(&key).and_then(|n| n.to_value().as_f64());
        let step = step.map_or(floor, |s| (s as i64).max(floor));
        row.set(&key, Value::Int(step));
        self.step_floor = Some(step + 1);
    }

    fn merge_config(&mut self, items: &[Item]) {
        for item in usable(items) {
            self.config.merge(&item.path(), item.value());
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
        let mut lines = Vec::new();
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let text = line.trim_end_matches(['\n', '\r']);
            let prefix = if stderr { "ERROR " } else { "" };
            lines.push(Line::new(format!("{prefix}{stamp} {text}")));
        }
        for line in lines {
            if self.fits_a_line(&line, || "a console line".into()) {
                self.console.push(line);
            }
        }
    }

    /// Whether `line` is within W&B's limit. A line over it is not sent (the server would
    /// refuse the request with it), as in wandb-core; it stays in the transaction log. The
    /// first one is reported on stderr, naming `what` it was.
    fn fits_a_line(&mut self, line: &Line, what: impl FnOnce() -> String) -> bool {
        let size = line.cost;
        if size <= MAX_LINE_BYTES {
            return true;
        }
        if !std::mem::replace(&mut self.skipped_a_line, true) {
            let run_id = self.run.as_ref().map_or("", |run| run.run_id.as_str());
            eprintln!(
                "wandb-nexus: run {run_id}: {} is {size} bytes, over W&B's limit of \
                 {MAX_LINE_BYTES} bytes per line; it is not sent to W&B (the transaction log \
                 keeps it), nor are later lines over the limit",
                what()
            );
        }
        false
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

    /// The data not yet acknowledged by the server, as much of it as fits in `max_bytes` of
    /// lines (see `line_cost`): the oldest history and console lines, whole, and the summary
    /// if there is room left. Calling it again before `acknowledge` returns the same lines at
    /// the same offsets, plus anything newer that fits.
    pub fn pending(&mut self, max_bytes: usize) -> Batch {
        let mut room = max_bytes;
        let history = take_fitting(&self.history, &mut room);
        let console = take_fitting(&self.console, &mut room);
        let summary = if self.summary_changed {
            self.pending_summary(&mut room)
        } else {
            None
        };
        Batch {
            history: Chunk {
                offset: self.history_sent,
                lines: history,
            },
            summary,
            console: Chunk {
                offset: self.console_sent,
                lines: console,
            },
        }
    }

    /// The changed summary, if it fits in `room`. One over the line limit is not sent until
    /// it changes again.
    fn pending_summary(&mut self, room: &mut usize) -> Option<String> {
        let line = match self.summary_line.take() {
            Some(line) => line,
            None => Line::new(self.summary.to_json()),
        };
        if !self.fits_a_line(&line, || "the summary".into()) {
            self.summary_changed = false;
            return None;
        }
        let text = take_fitting(std::slice::from_ref(&line), room).pop();
        self.summary_line = Some(line);
        text
    }

    /// Whether some of the data not yet acknowledged is not in `batch` (taken by `pending`).
    pub fn holds_more_than(&self, batch: &Batch) -> bool {
        self.history.len() > batch.history.lines.len()
            || self.console.len() > batch.console.lines.len()
            || (self.summary_changed && batch.summary.is_none())
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
        // The summary line is made anew after every change: equal to what was sent, it is
        // what the server now has, and need not be kept.
        if let (Some(sent), Some(current)) = (&batch.summary, &self.summary_line) {
            if *sent == current.text {
                self.summary_changed = false;
                self.summary_line = None;
            }
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

/// The bytes a line adds to a file_stream body: the line as a JSON string, and a comma.
pub fn line_cost(line: &str) -> usize {
    let escaped: usize = line
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6, // \u00XX
            _ => 1,
        })
        .sum();
    escaped + 3
}

/// The leading `lines` that fit in `room`, which they use up.
fn take_fitting(lines: &[Line], room: &mut usize) -> Vec<String> {
    let mut taken = Vec::new();
    for line in lines {
        let Some(left) = room.checked_sub(line.cost) else {
            break;
        };
        *room = left;
        taken.push(line.text.clone());
    }
    taken
}

/// A history record's step, for messages.
fn step(history: &HistoryRecord) -> String {
    match &history.step {
        Some(step) => step.num.to_string(),
        None => history
            .item
            .iter()
            .find(|item| item.path() == ["_step"])
            .map_or_else(|| "?".into(), |item| item.value_json.clone()),
    }
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
    use crate::log::records::{HistoryStep, ItemUpdates, RunExitRecord, Timestamp};

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
    fn a_resumed_logs_rows_are_renumbered_after_the_servers_step() {
        let mut stream = RunStream::default();
        stream.renumber_steps_from(10);
        for step in [0, 1, 12] {
            stream.apply(&history(step));
        }
        assert_eq!(
            stream.pending(REQUEST_LINE_BYTES).history.lines,
            vec![
                r#"{"d":{"x":1},"_step":10}"#,
                r#"{"d":{"x":1},"_step":11}"#,
                r#"{"d":{"x":1},"_step":12}"#,
            ]
        );
    }

    #[test]
    fn later_run_records_change_fields_not_the_config() {
        let run = |name: &str, lr: &str| {
            record(RecordType::Run(RunRecord {
                display_name: name.into(),
                config: Some(ItemUpdates {
                    update: vec![item(&["lr"], lr)],
                    remove: Vec::new(),
                }),
                ..Default::default()
            }))
        };
        let mut stream = RunStream::default();
        stream.apply(&run("first", "1"));
        stream.config_sent();
        stream.apply(&record(RecordType::Config(ItemUpdates {
            update: vec![item(&["lr"], "2")],
            remove: Vec::new(),
        })));
        assert!(!stream.run_changed());
        stream.apply(&run("renamed", "1"));
        assert!(stream.run_changed());
        assert_eq!(stream.run.as_ref().unwrap().display_name, "renamed");
        assert_eq!(stream.config.to_json(), r#"{"lr":2}"#);
    }

    #[test]
    fn history_rows_become_nested_json_lines() {
        let mut stream = RunStream::default();
        stream.apply(&history(0));
        assert_eq!(
            stream.pending(REQUEST_LINE_BYTES).history.lines,
            vec![r#"{"d":{"x":1},"_step":0}"#]
        );
    }

    #[test]
    fn retried_batches_keep_offsets_and_acknowledged_lines_are_dropped() {
        let mut stream = RunStream::default();
        stream.start_history_at(5);
        stream.apply(&history(0));
        let first = stream.pending(REQUEST_LINE_BYTES);
        stream.apply(&history(1));
        // A retry before acknowledgement still starts at the same offset.
        let retry = stream.pending(REQUEST_LINE_BYTES);
        assert_eq!((first.history.offset, retry.history.offset), (5, 5));
        assert_eq!(retry.history.lines.len(), 2);
        stream.acknowledge(&first);
        let next = stream.pending(REQUEST_LINE_BYTES);
        assert_eq!(next.history.offset, 6);
        assert_eq!(next.history.lines, vec![r#"{"d":{"x":1},"_step":1}"#]);
        stream.acknowledge(&next);
        assert!(stream.pending(REQUEST_LINE_BYTES).is_empty());
    }

    fn history_with(step: i64, text: &str) -> Record {
        record(RecordType::History(HistoryRecord {
            item: vec![item(&["s"], &Value::Str(text.into()).to_json())],
            step: Some(HistoryStep { num: step }),
        }))
    }

    #[test]
    fn line_cost_is_the_bytes_a_line_takes_in_a_body() {
        for line in [
            "",
            "plain",
            "\"q\" \\ \n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "naïve €",
        ] {
            let as_json = serde_json::to_string(line).unwrap();
            assert_eq!(line_cost(line), as_json.len() + 1, "{line:?}"); // and a comma
        }
    }

    #[test]
    fn batches_hold_whole_lines_up_to_the_size_given() {
        let mut stream = RunStream::default();
        for step in 0..3 {
            stream.apply(&history_with(step, &"x".repeat(1000)));
        }
        let line_size = stream.history[0].cost;
        let first = stream.pending(2 * line_size + line_size / 2);
        assert_eq!((first.history.offset, first.history.lines.len()), (0, 2));
        assert!(stream.holds_more_than(&first));
        stream.acknowledge(&first);
        let rest = stream.pending(line_size);
        assert_eq!((rest.history.offset, rest.history.lines.len()), (2, 1));
        assert!(!stream.holds_more_than(&rest));
    }

    #[test]
    fn lines_over_the_limit_are_skipped() {
        let mut stream = RunStream::default();
        let oversized = "y".repeat(MAX_LINE_BYTES);
        stream.apply(&history_with(0, "small"));
        stream.apply(&history_with(1, &oversized));
        stream.apply(&history_with(2, "small"));
        stream.apply(&record(RecordType::Summary(ItemUpdates {
            update: vec![item(&["s"], &Value::Str(oversized).to_json())],
            remove: vec![],
        })));
        let batch = stream.pending(REQUEST_LINE_BYTES);
        assert_eq!(batch.history.lines.len(), 2);
        assert!(batch
            .history
            .lines
            .iter()
            .all(|line| line.contains("small")));
        assert_eq!(batch.summary, None);
        assert!(!stream.holds_more_than(&batch));
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
            stream.pending(REQUEST_LINE_BYTES).console.lines,
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
        let batch = stream.pending(REQUEST_LINE_BYTES);
        assert_eq!(
            batch.summary.as_deref(),
            Some(r#"{"loss":0.5,"d":{"x":NaN}}"#)
        );
        stream.acknowledge(&batch);
        assert_eq!(stream.pending(REQUEST_LINE_BYTES).summary, None);
        assert!(stream.config_changed());
        stream.config_sent();
        assert!(!stream.config_changed());
        assert_eq!(
            config_json(&stream.config),
            r#"{"opt":{"value":{"lr":0.1,"beta":2}}}"#
        );
    }

    #[test]
    fn items_nested_deeper_than_any_value_are_not_applied() {
        // Deep enough to overflow a test thread's 2 MiB stack when made into JSON.
        let deep = vec!["k"; 100_000];
        let mut stream = RunStream::default();
        stream.apply(&record(RecordType::History(HistoryRecord {
            item: vec![item(&deep, "1"), item(&["x"], "2")],
            step: None,
        })));
        stream.apply(&record(RecordType::Summary(ItemUpdates {
            update: vec![item(&deep, "1"), item(&["y"], "3")],
            remove: vec![item(&deep, "")],
        })));
        let batch = stream.pending(REQUEST_LINE_BYTES);
        assert_eq!(batch.history.lines, vec![r#"{"x":2}"#]);
        assert_eq!(batch.summary.as_deref(), Some(r#"{"y":3}"#));
    }
}
