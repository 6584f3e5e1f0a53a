//! Structured inputs: history rows of any values, and records of any size. Each row's bytes
//! from `HistoryEncoder` must be exactly what prost writes for the same `Record`; the log
//! written from all of them must read back record for record (records span 32 KiB blocks);
//! with one byte of the log changed, the reader may lose records but must never make one up
//! (a corrupt chunk leaves a hole in the record it belongs to).

#![no_main]

use _core::log::records::{history_record, HistoryEncoder, Record, RecordInfo, Row};
use _core::log::txlog::{LogReader, LogWriter, BLOCK_SIZE};
use _core::core::values::{Tree, Value};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Enough blocks for every way a record can be cut into chunks, few enough to stay fast.
const MAX_LOG_BYTES: usize = 8 * BLOCK_SIZE;

/// A logged value, as the fuzzer builds it (`Value` has no `Arbitrary`).
#[derive(Arbitrary, Debug)]
enum LoggedValue {
    Null,
    Bool(bool),
    Int(i64),
    BigInt(u128),
    Float(f64),
    Str(String),
    List(Vec<LoggedValue>),
    Map(Vec<(String, LoggedValue)>),
}

impl LoggedValue {
    fn into_value(self) -> Value {
        match self {
            LoggedValue::Null => Value::Null,
            LoggedValue::Bool(b) => Value::Bool(b),
            LoggedValue::Int(i) => Value::Int(i),
            LoggedValue::BigInt(i) => Value::BigInt(i.to_string()),
            LoggedValue::Float(f) => Value::Float(f),
            LoggedValue::Str(s) => Value::Str(s),
            LoggedValue::List(items) => {
                Value::List(items.into_iter().map(Self::into_value).collect())
            }
            LoggedValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, value.into_value()))
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Entry {
    /// A history row, as `log()` hands it to the writer.
    Row {
        num: i64,
        step: i64,
        timestamp: Option<f64>,
        runtime: f64,
        stream_id: String,
        keys: Vec<(String, LoggedValue)>,
    },
    /// Any record of `len` bytes: large ones cheaply, to cross block boundaries.
    Bytes { len: u16, fill: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<Entry>,
    corrupt_at: usize,
    corrupt_mask: u8,
}

fuzz_target!(|input: Input| {
    let mut encoder = HistoryEncoder::default();
    let mut records = Vec::new();
    let mut total = 0;
    for entry in input.entries {
        let record = match entry {
            Entry::Row {
                num,
                step,
                timestamp,
                runtime,
                stream_id,
                keys,
            } => {
                let mut values = Tree::default();
                for (key, value) in keys {
                    values.merge_key(key.into(), value.into_value());
                }
                let row = Row {
                    step,
                    timestamp,
                    runtime,
                    values,
                };
                let info = RecordInfo { stream_id };
                let mut encoded = Vec::new();
                encoder.encode(num, &row, &info, &mut encoded);
                let expected = history_record(num, &row, info);
                assert_eq!(Record::decode(encoded.as_slice()).as_ref(), Ok(&expected));
                assert_eq!(encoded, expected.encode_to_vec());
                encoded
            }
            Entry::Bytes { len, fill } => vec![fill; usize::from(len)],
        };
        total += record.len();
        if total > MAX_LOG_BYTES {
            break;
        }
        records.push(record);
    }

    let mut log = write_log(&records);
    let mut reader = LogReader::new(&log).unwrap();
    assert_eq!(reader.by_ref().collect::<Vec<_>>(), records);
    assert_eq!(reader.corrupt_chunks, 0);

    if input.corrupt_mask != 0 {
        let at = input.corrupt_at % log.len();
        log[at] ^= input.corrupt_mask;
        if let Ok(reader) = LogReader::new(&log) {
            let read: Vec<_> = reader.collect();
            assert!(
                is_subsequence(&read, &records),
                "byte {at} changed: records were made up"
            );
        }
    }
});

fn write_log(records: &[Vec<u8>]) -> Vec<u8> {
    let mut log = Vec::new();
    let mut writer = LogWriter::new(&mut log).unwrap();
    for record in records {
        writer.append(record).unwrap();
    }
    log
}

fn is_subsequence(read: &[Vec<u8>], written: &[Vec<u8>]) -> bool {
    let mut rest = written.iter();
    read.iter().all(|record| rest.any(|w| w == record))
}
