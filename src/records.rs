//! The `Record` protobuf messages of the `.wandb` transaction log (package `wandb_internal`),
//! limited to what this client writes or reads. Field numbers follow the published schema
//! (shared/docs/wandb-protocol.md §5.4–5.5); fields we never use are simply absent, which
//! protobuf readers accept.

use prost::{Message, Oneof};

#[derive(Clone, PartialEq, Message)]
pub struct Record {
    #[prost(int64, tag = "1")]
    pub num: i64,
    #[prost(oneof = "RecordType", tags = "2, 3, 5, 6, 11, 12, 13, 17, 18, 21, 26")]
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
    #[prost(message, optional, tag = "17")]
    pub start_time: Option<Timestamp>,
    #[prost(message, optional, tag = "19")]
    pub telemetry: Option<TelemetryRecord>,
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
