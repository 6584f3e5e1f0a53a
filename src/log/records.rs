//! The `Record` protobuf messages of the `.wandb` transaction log (package `wandb_internal`),
//! limited to what this client writes or reads. Field numbers follow the published schema
//! (shared/docs/wandb-protocol.md §5.4–5.5); fields we never use are simply absent, which
//! protobuf readers accept.

use prost::{Message, Oneof};

use crate::artifact::{Artifact, Entry};
use crate::core::values::{leaf_path, Tree, Value};

#[derive(Clone, PartialEq, Message)]
pub struct Record {
    #[prost(int64, tag = "1")]
    pub num: i64,
    #[prost(
        oneof = "RecordType",
        tags = "2, 3, 5, 6, 8, 10, 11, 12, 13, 17, 18, 21, 25, 26"
    )]
    pub record_type: Option<RecordType>,
    #[prost(message, optional, tag = "200")]
    pub info: Option<RecordInfo>,
}

#[derive(Clone, PartialEq, Oneof)]
pub enum RecordType {
    #[prost(message, tag = "2")]
    History(HistoryRecord),
    #[prost(message, tag = "3")]
    Summary(SummaryRecord),
    #[prost(message, tag = "5")]
    Config(ConfigRecord),
    #[prost(message, tag = "6")]
    Files(FilesRecord),
    #[prost(message, tag = "8")]
    Artifact(ArtifactRecord),
    #[prost(message, tag = "10")]
    Alert(AlertRecord),
    #[prost(message, tag = "11")]
    Telemetry(TelemetryRecord),
    #[prost(message, tag = "12")]
    Metric(MetricRecord),
    #[prost(message, tag = "13")]
    OutputRaw(OutputRawRecord),
    #[prost(message, tag = "17")]
    Run(RunRecord),
    #[prost(message, tag = "18")]
    Exit(RunExitRecord),
    #[prost(message, tag = "21")]
    Header(HeaderRecord),
    #[prost(message, tag = "25")]
    UseArtifact(UseArtifactRecord),
    #[prost(message, tag = "26")]
    Environment(EnvironmentRecord),
}

#[derive(Clone, PartialEq, Message)]
pub struct RecordInfo {
    #[prost(string, tag = "1")]
    pub stream_id: String,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn at(time: std::time::SystemTime) -> Self {
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }
    }

    pub fn now() -> Self {
        Self::at(std::time::SystemTime::now())
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct HeaderRecord {
    #[prost(message, optional, tag = "1")]
    pub version_info: Option<VersionInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct VersionInfo {
    #[prost(string, tag = "1")]
    pub producer: String,
    #[prost(string, tag = "2")]
    pub min_consumer: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RunRecord {
    #[prost(string, tag = "1")]
    pub run_id: String,
    #[prost(string, tag = "2")]
    pub entity: String,
    #[prost(string, tag = "3")]
    pub project: String,
    #[prost(message, optional, tag = "4")]
    pub config: Option<ConfigRecord>,
    #[prost(string, tag = "6")]
    pub run_group: String,
    #[prost(string, tag = "7")]
    pub job_type: String,
    #[prost(string, tag = "8")]
    pub display_name: String,
    #[prost(string, tag = "9")]
    pub notes: String,
    #[prost(string, repeated, tag = "10")]
    pub tags: Vec<String>,
    #[prost(string, tag = "13")]
    pub host: String,
    #[prost(int64, tag = "14")]
    pub starting_step: i64,
    #[prost(string, tag = "16")]
    pub storage_id: String,
    #[prost(message, optional, tag = "17")]
    pub start_time: Option<Timestamp>,
    /// This part of the run continues one the server held.
    #[prost(bool, tag = "18")]
    pub resumed: bool,
    #[prost(message, optional, tag = "19")]
    pub telemetry: Option<TelemetryRecord>,
    /// Seconds the run had run before this part (a resumed run).
    #[prost(int32, tag = "20")]
    pub runtime: i32,
    /// `resume` was "allow" or "must": a sync resumes the run on the server, as wandb's does.
    #[prost(bool, tag = "24")]
    pub resume: bool,
}

/// `run.alert(...)`: sent to W&B as NotifyScriptableRunAlert.
#[derive(Clone, PartialEq, Message)]
pub struct AlertRecord {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub text: String,
    /// INFO, WARN or ERROR.
    #[prost(string, tag = "3")]
    pub level: String,
    /// Milliseconds during which W&B sends no repeat of this alert.
    #[prost(int64, tag = "4")]
    pub wait_duration: i64,
}

/// Shared shape of history, summary and config items: a flat `key` or a `nested_key` path,
/// and the value as (extended) JSON.
#[derive(Clone, PartialEq, Message)]
pub struct Item {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, repeated, tag = "2")]
    pub nested_key: Vec<String>,
    #[prost(string, tag = "16")]
    pub value_json: String,
}

impl Item {
    /// The item's path, whichever of `key` and `nested_key` carries it.
    pub fn path(&self) -> Vec<String> {
        if self.nested_key.is_empty() {
            vec![self.key.clone()]
        } else {
            self.nested_key.clone()
        }
    }

    /// The item's value; text that is not JSON is kept as a string rather than dropped.
    pub fn value(&self) -> Value {
        Value::parse_json(&self.value_json).unwrap_or_else(|_| Value::Str(self.value_json.clone()))
    }
}

/// Items nested deeper than this are not applied. Python values nest at most 100 deep, so
/// only a damaged or forged log has one, and the tree it would make is too deep to turn into
/// JSON (recursively) on a 2 MiB thread stack.
const MAX_ITEM_DEPTH: usize = 512;

/// The items of a record read back that are safe to apply: all but those nested deeper than
/// `MAX_ITEM_DEPTH`.
pub fn usable(items: &[Item]) -> impl Iterator<Item = &Item> {
    items
        .iter()
        .filter(|item| item.nested_key.len() <= MAX_ITEM_DEPTH)
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoryRecord {
    #[prost(message, repeated, tag = "1")]
    pub item: Vec<Item>,
    #[prost(message, optional, tag = "2")]
    pub step: Option<HistoryStep>,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct HistoryStep {
    #[prost(int64, tag = "1")]
    pub num: i64,
}

/// Summary and config records share one shape: items to set and items to remove.
#[derive(Clone, PartialEq, Message)]
pub struct ItemUpdates {
    #[prost(message, repeated, tag = "1")]
    pub update: Vec<Item>,
    #[prost(message, repeated, tag = "2")]
    pub remove: Vec<Item>,
}

pub type SummaryRecord = ItemUpdates;
pub type ConfigRecord = ItemUpdates;

#[derive(Clone, PartialEq, Message)]
pub struct FilesRecord {
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<FilesItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FilesItem {
    #[prost(string, tag = "1")]
    pub path: String,
    /// 0 NOW, 1 END, 2 LIVE.
    #[prost(int32, tag = "2")]
    pub policy: i32,
    /// 0 OTHER, 1 WANDB, 2 MEDIA, 3 ARTIFACT.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
}

/// An artifact to save (a table's `run_table`); written in every mode, so delivery and
/// `wandb sync` both find it in the log.
#[derive(Clone, PartialEq, Message)]
pub struct ArtifactRecord {
    #[prost(string, tag = "1")]
    pub run_id: String,
    #[prost(string, tag = "2")]
    pub project: String,
    #[prost(string, tag = "3")]
    pub entity: String,
    #[prost(string, tag = "4")]
    pub r#type: String,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub digest: String,
    #[prost(string, tag = "7")]
    pub description: String,
    /// JSON text.
    #[prost(string, tag = "8")]
    pub metadata: String,
    #[prost(string, repeated, tag = "11")]
    pub aliases: Vec<String>,
    #[prost(message, optional, tag = "12")]
    pub manifest: Option<ArtifactManifest>,
    #[prost(bool, tag = "14")]
    pub finalize: bool,
    #[prost(string, tag = "15")]
    pub client_id: String,
    #[prost(string, tag = "16")]
    pub sequence_client_id: String,
    #[prost(string, repeated, tag = "19")]
    pub tags: Vec<String>,
    #[prost(string, tag = "20")]
    pub digest_algorithm: String,
}

/// A run used a logged artifact (`use_artifact`): its server id, type and name as resolved.
#[derive(Clone, PartialEq, Message)]
pub struct UseArtifactRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, tag = "3")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArtifactManifest {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(string, tag = "2")]
    pub storage_policy: String,
    #[prost(message, repeated, tag = "3")]
    pub storage_policy_config: Vec<StoragePolicyConfigItem>,
    #[prost(message, repeated, tag = "4")]
    pub contents: Vec<ArtifactManifestEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoragePolicyConfigItem {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value_json: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ArtifactManifestEntry {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(string, tag = "2")]
    pub digest: String,
    #[prost(string, tag = "3")]
    pub r#ref: String,
    /// 0 when unknown, as wandb writes it.
    #[prost(int64, tag = "4")]
    pub size: i64,
    #[prost(string, tag = "6")]
    pub local_path: String,
    #[prost(message, repeated, tag = "16")]
    pub extra: Vec<ExtraItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExtraItem {
    #[prost(string, tag = "1")]
    pub key: String,
    /// JSON text.
    #[prost(string, tag = "2")]
    pub value_json: String,
}

impl From<&Artifact> for ArtifactRecord {
    fn from(artifact: &Artifact) -> Self {
        Self {
            run_id: artifact.run_id.clone(),
            project: artifact.project.clone(),
            entity: artifact.entity.clone(),
            r#type: artifact.artifact_type.clone(),
            name: artifact.name.clone(),
            digest: artifact.digest(),
            description: artifact.description.clone(),
            metadata: artifact.metadata.clone(),
            aliases: artifact.aliases.clone(),
            manifest: Some(ArtifactManifest {
                version: 1,
                storage_policy: crate::artifact::STORAGE_POLICY.into(),
                storage_policy_config: vec![StoragePolicyConfigItem {
                    key: "storageLayout".into(),
                    value_json: "\"V2\"".into(),
                }],
                contents: artifact.entries.iter().map(manifest_entry).collect(),
            }),
            finalize: true,
            client_id: artifact.client_id.clone(),
            sequence_client_id: artifact.sequence_client_id.clone(),
            tags: artifact.tags.clone(),
            digest_algorithm: crate::artifact::DIGEST_ALGORITHM.into(),
        }
    }
}

fn manifest_entry(entry: &Entry) -> ArtifactManifestEntry {
    ArtifactManifestEntry {
        path: entry.path.clone(),
        digest: entry.digest.clone(),
        r#ref: entry.reference.clone().unwrap_or_default(),
        size: entry.size.unwrap_or(0) as i64,
        local_path: entry
            .local_path
            .as_ref()
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default(),
        extra: entry
            .extra
            .iter()
            .map(|(key, value)| ExtraItem {
                key: key.clone(),
                value_json: value.to_json(),
            })
            .collect(),
    }
}

impl From<&ArtifactRecord> for Artifact {
    fn from(record: &ArtifactRecord) -> Self {
        let entries = record.manifest.iter().flat_map(|m| &m.contents);
        Self {
            run_id: record.run_id.clone(),
            project: record.project.clone(),
            entity: record.entity.clone(),
            artifact_type: record.r#type.clone(),
            name: record.name.clone(),
            description: record.description.clone(),
            metadata: record.metadata.clone(),
            aliases: record.aliases.clone(),
            tags: record.tags.clone(),
            client_id: record.client_id.clone(),
            sequence_client_id: record.sequence_client_id.clone(),
            entries: entries.map(artifact_entry).collect(),
            history_step: None,
        }
    }
}

fn artifact_entry(entry: &ArtifactManifestEntry) -> Entry {
    let present = |text: &str| (!text.is_empty()).then(|| text.to_string());
    Entry {
        path: entry.path.clone(),
        digest: entry.digest.clone(),
        // A file's size is always known; a reference's 0 is wandb's "unknown".
        size: (entry.size > 0 || entry.r#ref.is_empty()).then_some(entry.size.max(0) as u64),
        local_path: present(&entry.local_path).map(Into::into),
        reference: present(&entry.r#ref),
        extra: entry
            .extra
            .iter()
            .map(|item| {
                let value = Value::parse_json(&item.value_json)
                    .unwrap_or_else(|_| Value::Str(item.value_json.clone()));
                (item.key.clone(), value)
            })
            .collect(),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TelemetryRecord {
    /// `Feature` is a message of bools; we only ever set a few of them.
    #[prost(message, optional, tag = "3")]
    pub feature: Option<TelemetryFeature>,
    #[prost(string, tag = "4")]
    pub python_version: String,
    #[prost(string, tag = "13")]
    pub platform: String,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct TelemetryFeature {
    #[prost(bool, tag = "2")]
    pub finish: bool,
    #[prost(bool, tag = "4")]
    pub offline: bool,
    #[prost(bool, tag = "5")]
    pub resumed: bool,
    #[prost(bool, tag = "7")]
    pub metric: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub glob_name: String,
    #[prost(string, tag = "4")]
    pub step_metric: String,
    #[prost(message, optional, tag = "6")]
    pub options: Option<MetricOptions>,
    #[prost(message, optional, tag = "7")]
    pub summary: Option<MetricSummary>,
    /// 0 unset, 1 minimize, 2 maximize.
    #[prost(int32, tag = "8")]
    pub goal: i32,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct MetricOptions {
    #[prost(bool, tag = "1")]
    pub step_sync: bool,
    #[prost(bool, tag = "2")]
    pub hidden: bool,
    #[prost(bool, tag = "3")]
    pub defined: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct MetricSummary {
    #[prost(bool, tag = "1")]
    pub min: bool,
    #[prost(bool, tag = "2")]
    pub max: bool,
    #[prost(bool, tag = "3")]
    pub mean: bool,
    #[prost(bool, tag = "4")]
    pub best: bool,
    #[prost(bool, tag = "5")]
    pub last: bool,
    #[prost(bool, tag = "6")]
    pub none: bool,
    #[prost(bool, tag = "8")]
    pub first: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct OutputRawRecord {
    /// 0 STDERR, 1 STDOUT.
    #[prost(int32, tag = "1")]
    pub output_type: i32,
    #[prost(message, optional, tag = "2")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "3")]
    pub line: String,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct RunExitRecord {
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    #[prost(int32, tag = "2")]
    pub runtime: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct EnvironmentRecord {
    #[prost(string, tag = "1")]
    pub os: String,
    #[prost(string, tag = "2")]
    pub python: String,
    #[prost(message, optional, tag = "3")]
    pub started_at: Option<Timestamp>,
    #[prost(string, repeated, tag = "5")]
    pub args: Vec<String>,
    #[prost(string, tag = "6")]
    pub program: String,
    #[prost(string, tag = "11")]
    pub root: String,
    #[prost(string, tag = "12")]
    pub host: String,
    #[prost(string, tag = "14")]
    pub executable: String,
    #[prost(uint32, tag = "17")]
    pub cpu_count_logical: u32,
    #[prost(string, tag = "199")]
    pub writer_id: String,
}

impl Record {
    /// Encodes the record with its sequence number set.
    pub fn encode_numbered(&mut self, num: i64) -> Vec<u8> {
        self.num = num;
        self.encode_to_vec()
    }
}

/// A history row as log() hands it to the writer: the logged values, and the keys every row
/// carries kept as numbers until they are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub step: i64,
    /// `_timestamp` (Unix seconds); None when the values hold a `_timestamp` of their own.
    pub timestamp: Option<f64>,
    /// `_runtime`: seconds since the run started.
    pub runtime: f64,
    /// The logged keys; never `_step` or `_runtime`.
    pub values: Tree,
}

impl Row {
    /// Hands each item of the row to `item` in the order it is written (`_timestamp`, the
    /// values, `_step`, `_runtime`), with the keys of the branches above it (empty for a
    /// top-level key) and its own key.
    pub fn visit_items(&self, item: &mut impl FnMut(&[&str], &str, &Value)) {
        if let Some(timestamp) = self.timestamp {
            item(&[], "_timestamp", &Value::Float(timestamp));
        }
        self.values
            .visit_leaves(&mut Vec::new(), &mut |parents, key, value| {
                item(parents, key, value)
            });
        item(&[], "_step", &Value::Int(self.step));
        item(&[], "_runtime", &Value::Float(self.runtime));
    }
}

/// A history record as prost messages: one `Item` per item of the row, a top-level key in
/// `key` (as wandb writes it), a nested one's path in `nested_key`. What live delivery
/// reads; `HistoryEncoder` writes the same bytes without building it.
pub fn history_record(num: i64, row: &Row, info: RecordInfo) -> Record {
    let mut items = Vec::new();
    row.visit_items(&mut |parents, key, value| items.push(history_item(parents, key, value)));
    Record {
        num,
        record_type: Some(RecordType::History(HistoryRecord {
            item: items,
            step: Some(HistoryStep { num: row.step }),
        })),
        info: Some(info),
    }
}

/// A row's item: a top-level key in `key` (as wandb writes it), a nested one's path in
/// `nested_key`.
pub fn history_item(parents: &[&str], key: &str, value: &Value) -> Item {
    let (key, nested_key) = match parents {
        [] => (key.to_string(), Vec::new()),
        _ => (String::new(), leaf_path(parents, key)),
    };
    Item {
        key,
        nested_key,
        value_json: value.to_json(),
    }
}

/// Writes history records straight from their rows: the bytes prost writes for
/// `history_record`, without building the items. Rows are most of what a run writes, and
/// building them as messages first took most of the writer's time. Each message is written
/// in place with its length patched in afterwards, so nothing is copied from buffer to buffer
/// but each value's JSON.
#[derive(Default)]
pub struct HistoryEncoder {
    json: String,
}

impl HistoryEncoder {
    /// Appends the record to `out`.
    pub fn encode(&mut self, num: i64, row: &Row, info: &RecordInfo, out: &mut Vec<u8>) {
        let json = &mut self.json;
        put_int64(1, num, out);
        let history = begin_message(2, out);
        row.visit_items(&mut |parents, key, value| {
            let item = begin_message(1, out);
            if parents.is_empty() {
                put_string(1, key, out);
            } else {
                for part in parents.iter().copied().chain([key]) {
                    // A repeated field keeps its empty entries.
                    put_len_prefixed(2, part.as_bytes(), out);
                }
            }
            json.clear();
            value.write_json(json);
            put_string(16, json, out);
            end_message(item, out);
        });
        let step = begin_message(2, out);
        put_int64(1, row.step, out);
        end_message(step, out);
        end_message(history, out);
        let record_info = begin_message(200, out);
        put_string(1, &info.stream_id, out);
        end_message(record_info, out);
    }
}

/// Where an embedded message's one-byte length placeholder is (see `end_message`).
struct MessageStart(usize);

/// Starts an embedded message field; its body follows, then `end_message`.
fn begin_message(tag: u32, out: &mut Vec<u8>) -> MessageStart {
    put_varint(u64::from(tag) << 3 | LENGTH_DELIMITED, out);
    out.push(0);
    MessageStart(out.len() - 1)
}

/// Writes the message's length into its placeholder, moving the body along in the rare case
/// that the length needs more than one byte.
fn end_message(MessageStart(at): MessageStart, out: &mut Vec<u8>) {
    let body = at + 1;
    let len = out.len() - body;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    // put_varint's loop, into a buffer on the stack: the splice needs the bytes first, and
    // routing put_varint through such a buffer cost the writer 780 instructions per row.
    let mut prefix = [0; 10];
    let mut used = 0;
    let mut rest = len as u64;
    while rest >= 0x80 {
        prefix[used] = rest as u8 | 0x80;
        rest >>= 7;
        used += 1;
    }
    prefix[used] = rest as u8;
    out.splice(at..body, prefix[..=used].iter().copied());
}

/// A proto3 int64 field; zero is the default and is left out.
fn put_int64(tag: u32, value: i64, out: &mut Vec<u8>) {
    if value != 0 {
        put_varint(u64::from(tag) << 3, out);
        // int64 goes as its two's complement: ten bytes when negative.
        put_varint(value as u64, out);
    }
}

/// A proto3 string field; empty is the default and is left out.
fn put_string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        put_len_prefixed(tag, value.as_bytes(), out);
    }
}

const LENGTH_DELIMITED: u64 = 2;

fn put_len_prefixed(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(tag) << 3 | LENGTH_DELIMITED, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A base-128 varint. Most are one byte here (tags, short lengths): that case is one push.
fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: i64, timestamp: Option<f64>, entries: Vec<(&str, Value)>) -> Row {
        let mut values = Tree::default();
        for (key, value) in entries {
            values.merge_key(key.into(), value);
        }
        Row {
            step,
            timestamp,
            runtime: 1.25,
            values,
        }
    }

    #[test]
    fn every_record_kind_reads_back() {
        let used = RecordType::UseArtifact(UseArtifactRecord {
            id: "QXJ0aWZhY3Q6MQ==".into(),
            r#type: "model".into(),
            name: "classifier:prod".into(),
        });
        let artifact = RecordType::Artifact(ArtifactRecord {
            name: "ds".into(),
            tags: vec!["t".into()],
            ..ArtifactRecord::default()
        });
        for kind in [used, artifact] {
            let record = Record {
                num: 3,
                record_type: Some(kind),
                info: None,
            };
            let decoded = Record::decode(record.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn history_records_are_written_as_prost_writes_them() {
        let long = "k".repeat(300);
        let many: Vec<(String, Value)> = (0..40)
            .map(|i| (format!("metric_{i}"), Value::Float(f64::from(i) / 3.0)))
            .collect();
        for (num, step) in [
            (0, 0),
            (1, 0),
            (7, -1),
            (i64::MAX, i64::MIN),
            (300, 1 << 40),
        ] {
            let rows = [
                row(step, Some(1.7e9), vec![]),
                row(step, None, vec![("_timestamp", Value::Int(5))]),
                row(
                    step,
                    Some(0.5),
                    vec![("loss", Value::Float(0.5)), ("epoch", Value::Int(-3))],
                ),
                row(
                    step,
                    Some(-0.0),
                    vec![
                        ("", Value::Str("empty key".into())),
                        (long.as_str(), Value::Str("v".repeat(20_000))),
                        ("ü/ß.x", Value::List(vec![Value::Null, Value::Bool(true)])),
                        ("nan", Value::Float(f64::NAN)),
                        ("empty", Value::Map(vec![])),
                    ],
                ),
                row(
                    step,
                    Some(2.0),
                    vec![(
                        "d",
                        Value::Map(vec![
                            ("x".into(), Value::Int(1)),
                            ("".into(), Value::Map(vec![("y".into(), Value::Float(2.5))])),
                        ]),
                    )],
                ),
                row(
                    step,
                    Some(3.0),
                    many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
                ),
            ];
            let mut encoder = HistoryEncoder::default();
            for stream_id in ["", "run1"] {
                let info = RecordInfo {
                    stream_id: stream_id.into(),
                };
                for row in &rows {
                    let mut out = vec![7];
                    encoder.encode(num, row, &info, &mut out);
                    let expected = history_record(num, row, info.clone()).encode_to_vec();
                    assert_eq!(out[0], 7, "appends to what is there");
                    assert_eq!(out[1..], expected[..]);
                }
            }
        }
    }
}
