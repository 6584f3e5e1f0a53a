//! The rows journal: what makes a row durable the moment `log()` returns.
//!
//! The writer thread turns rows into the transaction log a little later, so a process that
//! dies (a Lambda timeout, `os._exit`, a signal, the OOM killer) would lose the rows still
//! queued for it. `log()` therefore also copies each row's encoded record into this file,
//! mapped into memory: a store into a shared file mapping lands in the kernel's page cache,
//! which outlives the process, and costs a copy rather than a system call. Whoever delivers
//! a run left behind (`recover`) appends the rows the log lacks.
//!
//! Layout: an 8-byte magic, the offset of the older lap's entries (u64, 0 for none), then
//! entries `[seq u64][len u32][0 u32][step i64][body]` padded to 8 bytes, little-endian. An
//! entry's seq is stored last (and cleared first): a process that dies leaves every store it
//! made before that point, so an entry whose seq follows the one before is whole.
//!
//! The journal is a ring: having reached the end of the file it starts a new lap at the
//! front, over entries the writer has already handed to the OS. The entries of the lap
//! before that are not overwritten yet stay readable from the offset in the header, moved
//! past each one before it is overwritten. So a reader follows two chains of consecutive
//! seqs, from the front and from that offset; a torn entry, or a stale one from an earlier
//! lap, breaks a chain and ends it. A writer a lap behind makes the ring grow instead. A body is
//! the row's items in a plain binary form (`put_value`): the JSON of a history record would
//! cost `log()` its float formatting, which the writer does later anyway. Items holding media
//! are left out: only the writer can store them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message;

use crate::core::values::Value;
use crate::error::Error;
use crate::log::records::{
    history_item, HistoryRecord, HistoryStep, Item, OutputRawRecord, Record, RecordInfo,
    RecordType, Row, RunExitRecord, SummaryRecord, Timestamp,
};
use crate::log::txlog::{LogReader, LogWriter};

pub const MAGIC: &[u8; 8] = b"WNXJRN02";
/// The first version: no header after the magic, no older lap.
const MAGIC_V1: &[u8; 8] = b"WNXJRN01";
/// The magic and the older lap's offset.
const HEADER: usize = 16;
const ENTRY_HEADER: usize = 24;
/// The first mapping; rows are small and the ring grows only while the writer is a lap behind.
const INITIAL_LEN: usize = 256 * 1024;
/// A writer this far behind is stuck; rows past it are only in the writer's queue.
const MAX_LEN: usize = 64 * 1024 * 1024;
/// How long a row waits for a writer a whole lap behind before the journal gives up.
const WAIT_FOR_WRITER: std::time::Duration = std::time::Duration::from_secs(2);

/// The journal beside a transaction log.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// A journal being appended to, by the run's callers (under the run's lock).
pub struct Journal {
    file: File,
    map: Mapping,
    /// Where the next entry goes.
    pos: usize,
    /// The seq of the last entry appended.
    seq: u64,
    /// The older lap's entries not overwritten yet: from `older` (an entry's start) to
    /// `older_end`.
    older: usize,
    older_end: usize,
    /// The seq of the last row the writer has handed to the OS in the log: entries up to it
    /// may be overwritten.
    handed: Arc<AtomicU64>,
    /// The row being stored, encoded; kept to reuse its allocation.
    body: Vec<u8>,
}

impl Journal {
    /// Creates the journal of the log at `log`, its room reserved on disk (so that a full
    /// disk is an error here, never a fault when a row is stored).
    pub fn create(log: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path_for(log))?;
        let map = Mapping::new(&file, INITIAL_LEN)?;
        // SAFETY: the mapping is INITIAL_LEN bytes long, more than the header; fallocate
        // zeroed the older lap's offset.
        unsafe { std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), map.ptr, MAGIC.len()) };
        Ok(Self {
            file,
            map,
            pos: HEADER,
            seq: 0,
            older: HEADER,
            older_end: HEADER,
            handed: Arc::default(),
            body: Vec::new(),
        })
    }

    /// Where the writer tells the journal which rows it has handed to the OS.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.handed.clone()
    }

    /// Stores a row; returns its seq. Fails only when the journal cannot grow, and then the
    /// row still goes to the writer.
    pub fn append(&mut self, row: &Row) -> io::Result<u64> {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        encode_row(row, &mut body);
        let stored = self.append_body(row.step, &body);
        self.body = body;
        stored
    }

    fn append_body(&mut self, step: i64, body: &[u8]) -> io::Result<u64> {
        let size = (ENTRY_HEADER + body.len()).next_multiple_of(8);
        if self.pos + size > self.map.len {
            self.make_room(size)?;
        }
        self.pass_older(self.pos + size)?;
        let seq = self.seq + 1;
        let mut header = [0u8; ENTRY_HEADER - 8];
        header[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        header[8..].copy_from_slice(&step.to_le_bytes());
        // SAFETY: `make_room` left at least `size` bytes mapped from `pos`, which is 8-byte
        // aligned in a page-aligned mapping, and only this journal (behind `&mut self`)
        // writes to it.
        unsafe {
            let at = self.map.ptr.add(self.pos);
            let seq_slot = &*at.cast::<AtomicU64>();
            seq_slot.store(0, Ordering::Relaxed);
            fence(Ordering::Release);
            std::ptr::copy_nonoverlapping(header.as_ptr(), at.add(8), header.len());
            std::ptr::copy_nonoverlapping(body.as_ptr(), at.add(ENTRY_HEADER), body.len());
            seq_slot.store(seq, Ordering::Release);
        }
        self.pos += size;
        self.seq = seq;
        Ok(seq)
    }

    /// At the end of the mapping: starts a new lap at the front when the writer has handed
    /// to the OS the first half of this lap (and so every lap before), else doubles the
    /// journal: a writer that far behind would soon hold up `log()` in `pass_older`.
    fn make_room(&mut self, size: usize) -> io::Result<()> {
        // Every lap starts at the front: the entry there is this lap's first.
        let lap_first = self.entry_at(HEADER).0;
        let half_lap = lap_first + self.seq.saturating_sub(lap_first) / 2;
        if self.handed.load(Ordering::Acquire) >= half_lap && HEADER + size <= self.map.len {
            self.older = HEADER;
            self.older_end = self.pos;
            self.pos = HEADER;
            return Ok(());
        }
        let mut len = self.map.len * 2;
        while self.pos + size > len {
            len *= 2;
        }
        if len > MAX_LEN {
            return Err(io::Error::other(
                "the rows journal is full: the writer is stuck",
            ));
        }
        self.map = Mapping::new(&self.file, len)?;
        Ok(())
    }

    /// Moves the older lap's start past its entries that begin before `end` (about to be
    /// overwritten), each once the writer has handed it to the OS, waiting for a writer a
    /// lap behind.
    fn pass_older(&mut self, end: usize) -> io::Result<()> {
        let overlaps = |journal: &Self| journal.older < journal.older_end && journal.older < end;
        if !overlaps(self) {
            return Ok(());
        }
        while overlaps(self) {
            let (seq, size) = self.entry_at(self.older);
            self.wait_until_handed(seq)?;
            self.older += size;
        }
        let older = if self.older < self.older_end {
            self.older
        } else {
            0
        };
        // SAFETY: the header's second word, 8-byte aligned in a page-aligned mapping.
        let slot = unsafe { &*self.map.ptr.add(MAGIC.len()).cast::<AtomicU64>() };
        // Released before the entries it passes are overwritten.
        slot.store(older as u64, Ordering::Release);
        fence(Ordering::Release);
        Ok(())
    }

    fn wait_until_handed(&self, seq: u64) -> io::Result<()> {
        let started = std::time::Instant::now();
        while self.handed.load(Ordering::Acquire) < seq {
            if started.elapsed() > WAIT_FOR_WRITER {
                return Err(io::Error::other(
                    "the rows journal is full: the writer is stuck",
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        Ok(())
    }

    /// The seq and size of the entry this journal stored at `pos` (seq 0 past the last).
    fn entry_at(&self, pos: usize) -> (u64, usize) {
        if pos + ENTRY_HEADER > self.map.len {
            return (0, ENTRY_HEADER);
        }
        // SAFETY: within the mapping, 8-byte aligned; only this journal writes to it.
        unsafe {
            let at = self.map.ptr.add(pos);
            let seq = (*at.cast::<AtomicU64>()).load(Ordering::Relaxed);
            let len = at.add(8).cast::<u32>().read();
            (seq, (ENTRY_HEADER + len as usize).next_multiple_of(8))
        }
    }
}

/// A row's items (`_step` is the entry's), each as its key path and value.
fn encode_row(row: &Row, out: &mut Vec<u8>) {
    row.visit_items(&mut |parents, key, value| {
        if key == "_step" && parents.is_empty() || value.has_media() {
            return;
        }
        out.push((parents.len() + 1) as u8);
        for part in parents.iter().copied().chain([key]) {
            put_bytes(part.as_bytes(), out);
        }
        put_value(value, out);
    });
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null | Value::Media(_) => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::BigInt(digits) => {
            out.push(3);
            put_bytes(digits.as_bytes(), out);
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(text) => {
            out.push(5);
            put_bytes(text.as_bytes(), out);
        }
        Value::List(items) => {
            out.push(6);
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            items.iter().for_each(|item| put_value(item, out));
        }
        Value::Map(entries) => {
            out.push(7);
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (key, item) in entries {
                put_bytes(key.as_bytes(), out);
                put_value(item, out);
            }
        }
    }
}

/// Reads what `put_*` wrote; None when the bytes are not that.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (taken, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn len(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.array()?) as usize)
    }

    fn text(&mut self) -> Option<String> {
        let len = self.len()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        // Values nest no deeper than a row can (the writer refuses deeper ones).
        if depth > 256 {
            return None;
        }
        Some(match self.array::<1>()?[0] {
            0 => Value::Null,
            1 => Value::Bool(self.array::<1>()?[0] != 0),
            2 => Value::Int(i64::from_le_bytes(self.array()?)),
            3 => Value::BigInt(self.text()?),
            4 => Value::Float(f64::from_le_bytes(self.array()?)),
            5 => Value::Str(self.text()?),
            6 => {
                let count = self.len()?;
                let items = (0..count).map(|_| self.value(depth + 1));
                Value::List(items.collect::<Option<_>>()?)
            }
            7 => {
                let count = self.len()?;
                let entries = (0..count).map(|_| Some((self.text()?, self.value(depth + 1)?)));
                Value::Map(entries.collect::<Option<_>>()?)
            }
            _ => return None,
        })
    }

    fn item(&mut self) -> Option<Item> {
        let parts = usize::from(self.array::<1>()?[0]);
        let path: Vec<String> = (0..parts).map(|_| self.text()).collect::<Option<_>>()?;
        let (key, parents) = path.split_last()?;
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        Some(history_item(&parents, key, &self.value(0)?))
    }
}

/// The history record of a journal entry, numbered `num`; None when its body is not a row.
pub fn entry_record(num: i64, entry: &Entry, info: &RecordInfo) -> Option<Record> {
    let mut reader = Reader(&entry.body);
    let mut items = Vec::new();
    while !reader.0.is_empty() {
        items.push(reader.item()?);
    }
    // In the place the writer puts it: after the values, before `_runtime`.
    let at = items.iter().rposition(|item| item.key == "_runtime");
    let step = history_item(&[], "_step", &Value::Int(entry.step));
    items.insert(at.unwrap_or(items.len()), step);
    Some(Record {
        num,
        record_type: Some(RecordType::History(HistoryRecord {
            item: items,
            step: Some(HistoryStep { num: entry.step }),
        })),
        info: Some(info.clone()),
    })
}

/// A shared, writable mapping of a file's first `len` bytes.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by one Journal; moving it between threads is
// as safe as moving a Vec.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, len: usize) -> io::Result<Self> {
        let fd = file.as_raw_fd();
        // SAFETY: plain system calls on a file we own.
        let err = unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        // SAFETY: a new shared mapping of `len` bytes of a file that has them.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; nothing refers to it after the drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One row as the journal holds it.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub step: i64,
    pub body: Vec<u8>,
}

/// The whole entries of a journal, in order of their seqs. An error means it is not a
/// journal this version can read.
pub fn read(data: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = match data.get(..MAGIC.len()) {
        Some(magic) if magic == MAGIC_V1 => chain(data, MAGIC_V1.len()),
        Some(magic) if magic == MAGIC && data.len() >= HEADER => {
            let older = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
            let mut entries = chain(data, HEADER);
            if let Ok(older @ HEADER..) = usize::try_from(older) {
                if older % 8 == 0 && older < data.len() {
                    entries.extend(chain(data, older));
                }
            }
            entries
        }
        _ => return Err("not a rows journal of this version of wandb-nexus".into()),
    };
    entries.sort_by_key(|entry| entry.seq);
    entries.dedup_by_key(|entry| entry.seq);
    Ok(entries)
}

/// The entries from `pos` on whose seqs follow one another, up to the first torn or stale one.
fn chain(data: &[u8], mut pos: usize) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    while pos + ENTRY_HEADER <= data.len() {
        let header = &data[pos..pos + ENTRY_HEADER];
        let seq = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let step = i64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let Some(body) = data.get(pos + ENTRY_HEADER..pos + ENTRY_HEADER + len) else {
            break;
        };
        let follows = entries
            .last()
            .is_none_or(|last| last.seq.checked_add(1) == Some(seq));
        if seq == 0 || !follows {
            break;
        }
        entries.push(Entry {
            seq,
            step,
            body: body.to_vec(),
        });
        pos += (ENTRY_HEADER + len).next_multiple_of(8);
    }
    entries
}

/// What a log holds, as far as it can be read.
#[derive(Default)]
struct LogState {
    /// Where its last whole record ends: anything after it is a torn write.
    end: usize,
    last_num: i64,
    last_step: Option<i64>,
    exited: bool,
    info: Option<RecordInfo>,
    /// The latest value of each history item since the last summary record: what the
    /// summary lacks.
    unsummarized: Vec<Item>,
}

/// Folds a row's items into `summary`, each replacing the value at its key.
fn fold(summary: &mut Vec<Item>, items: Vec<Item>) {
    for item in items {
        summary.retain(|s| s.key != item.key || s.nested_key != item.nested_key);
        summary.push(item);
    }
}

fn scan(data: &[u8]) -> Result<LogState, String> {
    let mut reader = LogReader::new(data).map_err(|e| e.to_string())?;
    let mut state = LogState {
        end: reader.offset(),
        ..LogState::default()
    };
    while let Some(bytes) = reader.next() {
        state.end = reader.offset();
        let Ok(record) = Record::decode(bytes.as_slice()) else {
            continue;
        };
        state.last_num = state.last_num.max(record.num);
        if state.info.is_none() {
            state.info = record.info.clone();
        }
        match &record.record_type {
            Some(RecordType::History(history)) => {
                state.last_step = history.step.as_ref().map(|s| s.num).or(state.last_step);
                fold(&mut state.unsummarized, history.item.clone());
            }
            Some(RecordType::Summary(_)) => state.unsummarized.clear(),
            Some(RecordType::Exit(_)) => state.exited = true,
            _ => {}
        }
    }
    Ok(state)
}

/// Makes the transaction log at `log`, left by a process that died, whole: the rows that
/// reached only the journal are appended (with a summary of their values), and a log
/// without an exit record is closed with `reason` in its console output and exit code 1,
/// as W&B shows a failed run. Doing it again changes nothing. Call it holding the log's
/// lock; on an error the log is left as it was.
pub fn recover(log: &Path, reason: &str) -> Result<(), Error> {
    let cannot =
        |what: &str, e: io::Error| Error::io(format!("cannot {what} {}", log.display()), e);
    let data = std::fs::read(log).map_err(|e| cannot("read", e))?;
    let state = scan(&data).map_err(|e| Error::Usage(format!("{}: {e}", log.display())))?;
    let journal_path = path_for(log);
    let rows = match std::fs::read(&journal_path) {
        Ok(journal) => read(&journal)
            .map_err(|e| Error::Usage(format!("{}: {e}; left in place", journal_path.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(cannot("read the journal of", e)),
    };
    let missing: Vec<Entry> = rows
        .into_iter()
        .filter(|row| state.last_step.is_none_or(|last| row.step > last))
        .collect();
    if !missing.is_empty() || !state.exited {
        append_missing(log, &state, &missing, reason).map_err(|e| cannot("complete", e))?;
    }
    match std::fs::remove_file(&journal_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(cannot("remove the journal of", e)),
        _ => Ok(()),
    }
}

fn append_missing(log: &Path, state: &LogState, rows: &[Entry], reason: &str) -> io::Result<()> {
    let info = state.info.clone().unwrap_or_default();
    let mut records = Vec::new();
    let mut summary = state.unsummarized.clone();
    for row in rows {
        let num = state.last_num + records.len() as i64 + 1;
        let Some(record) = entry_record(num, row, &info) else {
            eprintln!(
                "wandb-nexus: {}: skipped a journal entry that is not a row",
                log.display()
            );
            continue;
        };
        if let Some(RecordType::History(history)) = &record.record_type {
            fold(&mut summary, history.item.clone());
        }
        records.push(record.encode_to_vec());
    }
    let runtime = summary
        .iter()
        .find(|item| item.key == "_runtime")
        .and_then(|item| item.value_json.parse::<f64>().ok())
        .unwrap_or(0.0);
    let mut extra = Vec::new();
    if !summary.is_empty() {
        extra.push(RecordType::Summary(SummaryRecord {
            update: summary,
            remove: Vec::new(),
        }));
    }
    if !state.exited {
        extra.push(RecordType::OutputRaw(OutputRawRecord {
            output_type: 0,
            timestamp: Some(Timestamp::now()),
            line: format!("wandb-nexus: {reason}; the run ends at its last stored row\n"),
        }));
        extra.push(RecordType::Exit(RunExitRecord {
            exit_code: 1,
            runtime: runtime as i32,
        }));
    }
    for record_type in extra {
        let record = Record {
            num: state.last_num + records.len() as i64 + 1,
            record_type: Some(record_type),
            info: Some(info.clone()),
        };
        records.push(record.encode_to_vec());
    }
    let file = OpenOptions::new().write(true).open(log)?;
    // What follows the last whole record is a torn write: the records go in its place.
    file.set_len(state.end as u64)?;
    let mut writer = LogWriter::continue_at(file, state.end)?;
    for record in &records {
        writer.append(record)?;
    }
    writer.sync()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::values::{Tree, Value};
    use crate::log::records::{self, HistoryEncoder, Row};
    use crate::log::txlog::read_file;

    fn temp_log() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wandb-nexus-journal-{}",
            crate::core::system::random_run_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("run-x.wandb")
    }

    fn info() -> RecordInfo {
        RecordInfo {
            stream_id: "x".into(),
        }
    }

    fn row(step: i64) -> Row {
        let mut values = Tree::default();
        values.set(&["loss".to_string()], Value::Float(step as f64 / 2.0));
        Row {
            step,
            timestamp: Some(1.5),
            runtime: step as f64,
            values,
        }
    }

    fn steps(log: &Path) -> Vec<i64> {
        read_file(log)
            .unwrap()
            .iter()
            .filter_map(
                |bytes| match Record::decode(bytes.as_slice()).ok()?.record_type {
                    Some(RecordType::History(h)) => h.step.map(|s| s.num),
                    _ => None,
                },
            )
            .collect()
    }

    fn exit_codes(log: &Path) -> Vec<i32> {
        read_file(log)
            .unwrap()
            .iter()
            .filter_map(
                |bytes| match Record::decode(bytes.as_slice()).ok()?.record_type {
                    Some(RecordType::Exit(exit)) => Some(exit.exit_code),
                    _ => None,
                },
            )
            .collect()
    }

    /// A log as the writer leaves it: header, then rows 0..written, flushed.
    fn write_log(log: &Path, written: i64) {
        let mut writer = LogWriter::create(log).unwrap();
        let run = Record {
            num: 1,
            record_type: Some(RecordType::Run(Default::default())),
            info: Some(info()),
        };
        writer.append(&run.encode_to_vec()).unwrap();
        for step in 0..written {
            let mut bytes = Vec::new();
            HistoryEncoder::default().encode(step + 2, &row(step), &info(), &mut bytes);
            writer.append(&bytes).unwrap();
        }
        writer.flush().unwrap();
    }

    #[test]
    fn entries_read_back_in_order_and_wrap_once_handed_to_the_os() {
        let log = temp_log();
        let mut journal = Journal::create(&log).unwrap();
        let rows = (INITIAL_LEN / 64) as i64;
        for step in 0..rows {
            journal.append(&row(step)).unwrap();
        }
        assert!(
            journal.map.len > INITIAL_LEN,
            "grew while the writer had nothing"
        );
        journal.progress().store(journal.seq, Ordering::Release);
        let grown = journal.map.len;
        for step in rows..rows * 3 {
            journal.append(&row(step)).unwrap();
            journal.progress().store(journal.seq, Ordering::Release);
        }
        assert_eq!(journal.map.len, grown, "wrapped instead of growing");
        let entries = read(&std::fs::read(path_for(&log)).unwrap()).unwrap();
        let last = entries.last().unwrap();
        assert_eq!(last.step, rows * 3 - 1);
        assert_eq!(
            entry_record(7, last, &info()),
            Some(records::history_record(7, &row(last.step), info()))
        );
        assert!(entries.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn a_writer_behind_loses_nothing_across_laps_and_the_ring_stays_small() {
        let log = temp_log();
        let mut journal = Journal::create(&log).unwrap();
        let lag = 300;
        let mut checked = 0;
        for step in 0..(INITIAL_LEN as i64 / 4) {
            journal.append(&row(step)).unwrap();
            let handed = journal.seq.saturating_sub(lag);
            journal.progress().store(handed, Ordering::Release);
            if step % 997 == 0 {
                // What a process that died now leaves: every row the writer has not handed.
                let entries = read(&std::fs::read(path_for(&log)).unwrap()).unwrap();
                let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
                let first = seqs
                    .iter()
                    .position(|&s| s == handed + 1)
                    .unwrap_or_else(|| {
                        panic!("seq {} lost at step {step}: {:?}", handed + 1, &seqs[..3])
                    });
                assert!(seqs[first..].windows(2).all(|w| w[0] + 1 == w[1]));
                assert_eq!(*seqs.last().unwrap(), journal.seq);
                checked += 1;
            }
        }
        assert!(checked > 50);
        assert_eq!(
            journal.map.len, INITIAL_LEN,
            "grew for a writer a few rows behind"
        );
    }

    #[test]
    fn a_version_1_journal_is_read() {
        let mut data = MAGIC_V1.to_vec();
        let mut body = Vec::new();
        encode_row(&row(4), &mut body);
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&4i64.to_le_bytes());
        data.extend_from_slice(&body);
        let entries = read(&data).unwrap();
        assert_eq!((entries.len(), entries[0].step), (1, 4));
    }

    #[test]
    fn a_torn_entry_ends_the_journal() {
        let log = temp_log();
        let mut journal = Journal::create(&log).unwrap();
        for step in 0..3 {
            journal.append(&row(step)).unwrap();
        }
        drop(journal);
        let mut data = std::fs::read(path_for(&log)).unwrap();
        let mut first = Vec::new();
        encode_row(&row(0), &mut first);
        let second = HEADER + (ENTRY_HEADER + first.len()).next_multiple_of(8);
        // Died after clearing the second entry's seq, before storing it.
        data[second..second + 8].fill(0);
        assert_eq!(read(&data).unwrap().len(), 1);
        assert!(
            read(b"WNXJRN99").is_err(),
            "another version's journal is refused"
        );
    }

    #[test]
    fn recovery_appends_the_rows_the_log_lacks_and_closes_it_once() {
        let log = temp_log();
        write_log(&log, 3);
        let mut journal = Journal::create(&log).unwrap();
        for step in 0..5 {
            journal.append(&row(step)).unwrap();
        }
        // A torn write after the last whole record, as a killed process leaves it.
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        io::Write::write_all(&mut file, &[9, 9, 9, 9, 40, 0, 1, 7]).unwrap();
        recover(&log, "the invocation timed out").unwrap();
        assert_eq!(steps(&log), vec![0, 1, 2, 3, 4]);
        assert_eq!(exit_codes(&log), vec![1]);
        assert!(!path_for(&log).exists());
        let records = read_file(&log).unwrap();
        let nums: Vec<i64> = records
            .iter()
            .map(|b| Record::decode(b.as_slice()).unwrap().num)
            .collect();
        assert!(nums.windows(2).all(|w| w[0] + 1 == w[1]), "{nums:?}");
        let console =
            records
                .iter()
                .find_map(|b| match Record::decode(b.as_slice()).ok()?.record_type {
                    Some(RecordType::OutputRaw(out)) => Some(out.line),
                    _ => None,
                });
        assert!(console.unwrap().contains("the invocation timed out"));
        recover(&log, "again").unwrap();
        assert_eq!(steps(&log), vec![0, 1, 2, 3, 4]);
        assert_eq!(exit_codes(&log), vec![1]);
    }

    #[test]
    fn every_kind_of_value_reads_back_as_the_writer_writes_it() {
        let mut values = Tree::default();
        let nested = Value::Map(vec![
            ("a".into(), Value::List(vec![Value::Int(-3), Value::Null])),
            ("b".into(), Value::Bool(true)),
        ]);
        for (key, value) in [
            ("f", Value::Float(f64::NAN)),
            (
                "big",
                Value::BigInt("123456789012345678901234567890".into()),
            ),
            ("s", Value::Str("naïve \"quote\"".into())),
            ("m", nested),
            ("_timestamp", Value::Float(2.5)),
        ] {
            values.set(&[key.to_string()], value);
        }
        values.set(&["d".to_string(), "x".to_string()], Value::Int(1));
        let row = Row {
            step: 41,
            timestamp: None,
            runtime: 0.25,
            values,
        };
        let mut body = Vec::new();
        encode_row(&row, &mut body);
        let entry = Entry {
            seq: 1,
            step: 41,
            body,
        };
        assert_eq!(
            entry_record(3, &entry, &info()),
            Some(records::history_record(3, &row, info()))
        );
        let torn = Entry {
            body: entry.body[..entry.body.len() - 3].to_vec(),
            ..entry
        };
        assert_eq!(entry_record(3, &torn, &info()), None);
    }

    #[test]
    fn recovery_leaves_a_log_it_cannot_read_alone() {
        let log = temp_log();
        std::fs::write(&log, b"not a log").unwrap();
        assert!(recover(&log, "x").is_err());
        assert_eq!(std::fs::read(&log).unwrap(), b"not a log");
        let other = temp_log();
        write_log(&other, 1);
        std::fs::write(path_for(&other), b"WNXJRN99").unwrap();
        let before = std::fs::read(&other).unwrap();
        assert!(recover(&other, "x").is_err());
        assert_eq!(std::fs::read(&other).unwrap(), before);
    }
}
