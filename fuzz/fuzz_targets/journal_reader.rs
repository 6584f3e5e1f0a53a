//! Arbitrary bytes as a rows journal, through what recovery does with one: read the
//! entries and turn each into a history record. None of it may panic, and every record it
//! makes must encode and decode again.

#![no_main]

use _core::log::journal::{entry_record, read, MAGIC};
use _core::log::records::{Record, RecordInfo};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // Give every input the magic and a header, so the fuzzer spends its time on the entries.
    let journal = if data.starts_with(MAGIC) && data.len() >= 16 {
        data.to_vec()
    } else {
        [&MAGIC[..], &[0; 8], data].concat()
    };
    let entries = read(&journal).expect("the magic is there");
    assert!(entries.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    for entry in &entries {
        if let Some(record) = entry_record(1, entry, &RecordInfo::default()) {
            let bytes = record.encode_to_vec();
            assert_eq!(Record::decode(bytes.as_slice()).ok(), Some(record));
        }
    }
});
