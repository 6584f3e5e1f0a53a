//! Arbitrary bytes as a transaction log, through everything `sync` does with one before the
//! network: read the records, decode them, apply them to a `RunStream`, and build the
//! requests. None of it may panic, hang or use memory out of proportion to the input.

#![no_main]

use _core::api::delivery::run_upsert;
use _core::log::records::Record;
use _core::api::file_stream::{config_json, Batch, RunStream, MAX_REQUEST_BYTES, REQUEST_LINE_BYTES};
use _core::api::transport::file_stream_body;
use _core::log::txlog::{LogReader, BLOCK_SIZE, CHUNK_HEADER, FILE_HEADER};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // Most mutations of the header only reach its check: give every input a valid one, so
    // the fuzzer spends its time on the chunks.
    let log = if data.starts_with(&FILE_HEADER) {
        data.to_vec()
    } else {
        [&FILE_HEADER[..], data].concat()
    };
    // `sync` runs on the Lambda extension's thread, which has std's default stack of 2 MiB;
    // the main thread's 8 MiB would hide a recursion that overflows there.
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            sync_offline(&log);
            sync_offline(&with_valid_checksums(log));
        })
        .expect("a thread")
        .join()
        .expect("a panic aborts the process first");
});

fn sync_offline(log: &[u8]) {
    let reader = LogReader::new(log).expect("the header is there");
    let mut stream = RunStream::default();
    let mut record_bytes = 0;
    for bytes in reader {
        // Each chunk is read once, so the records together are never larger than the log.
        record_bytes += bytes.len();
        assert!(record_bytes <= log.len(), "records larger than the log");
        if let Ok(record) = Record::decode(bytes.as_slice()) {
            stream.apply(&record);
        }
    }
    if stream.run.is_some() {
        run_upsert(&stream);
    }
    // The file_stream requests of `Delivery::finish`, acknowledged as the server would.
    let exit_code = stream.exit_code.unwrap_or(1);
    loop {
        let last = stream.pending(REQUEST_LINE_BYTES);
        if !stream.holds_more_than(&last) {
            send(&mut stream, &last, Some(exit_code));
            break;
        }
        let batch = stream.pending(REQUEST_LINE_BYTES);
        assert!(
            !batch.is_empty(),
            "finish would send empty requests forever"
        );
        send(&mut stream, &batch, None);
    }
    config_json(&stream.config);
}

fn send(stream: &mut RunStream, batch: &Batch, exit_code: Option<i32>) {
    let body = file_stream_body(batch, &[], exit_code);
    assert!(
        body.len() <= MAX_REQUEST_BYTES,
        "a request over W&B's limit"
    );
    stream.acknowledge(batch);
}

/// The fuzzer cannot forge CRC-32s, so almost every mutated chunk would stop at the checksum:
/// this copy has the checksum each chunk's header calls for, as the log writer would write it,
/// so mutated records reach the decoder.
fn with_valid_checksums(mut log: Vec<u8>) -> Vec<u8> {
    let mut pos = FILE_HEADER.len();
    while pos + CHUNK_HEADER <= log.len() {
        let left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left_in_block < CHUNK_HEADER {
            pos += left_in_block;
            continue;
        }
        let len = usize::from(u16::from_le_bytes([log[pos + 4], log[pos + 5]]));
        let kind = log[pos + 6];
        let start = pos + CHUNK_HEADER;
        let end = (start + len).min(log.len());
        if len > left_in_block - CHUNK_HEADER || !(1..=4).contains(&kind) {
            // Not a chunk (bad framing, or zero padding): the reader goes on at the next block.
            pos += left_in_block;
            continue;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(&log[start..end]);
        log[pos..pos + 4].copy_from_slice(&crc.finalize().to_le_bytes());
        pos = end;
    }
    log
}
