//! The `.wandb` transaction log: a 7-byte file header, then LevelDB-style 32 KiB blocks of
//! CRC-checked chunks, each record a serialized `Record` protobuf (wandb-protocol.md §5.2–5.3).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use crate::log::lock::{try_lock, unlock};
use std::path::Path;

/// `:W&B`, the magic 0xBEE1 (little-endian) and store version 0.
pub const FILE_HEADER: [u8; 7] = [b':', b'W', b'&', b'B', 0xE1, 0xBE, 0];
pub const BLOCK_SIZE: usize = 32 * 1024;
pub const CHUNK_HEADER: usize = 7;

const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// CRC-32 (IEEE) over the chunk type byte followed by the payload, unmasked, as wandb-core
/// checks it.
fn chunk_crc(kind: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends records to a transaction log, splitting them into chunks at block boundaries.
pub struct LogWriter<W: Write> {
    out: W,
    /// Bytes already used in the current block (the file header counts in block 0).
    block_used: usize,
}

impl LogWriter<BufWriter<File>> {
    /// Creates a new log file, locked (`crate::log::lock`) until the run is complete; an
    /// existing file is never overwritten.
    pub fn create(path: &Path) -> io::Result<Self> {
        // Locked under another name, then given its own: a sweep never finds it unlocked.
        let mut name = path.as_os_str().to_owned();
        name.push(".new");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)?;
        if !try_lock(&file)? {
            return Err(io::Error::other("the new log is locked by another process"));
        }
        let mut writer = Self::new(BufWriter::with_capacity(BLOCK_SIZE, file))?;
        writer.flush()?;
        let named = give_name(Path::new(&name), path);
        let _ = std::fs::remove_file(&name);
        named?;
        Ok(writer)
    }

    /// Continues a log whose whole records end at `end` (the file's length).
    pub fn continue_at(mut file: File, end: usize) -> io::Result<Self> {
        file.seek(SeekFrom::Start(end as u64))?;
        Ok(Self {
            out: BufWriter::with_capacity(BLOCK_SIZE, file),
            block_used: end % BLOCK_SIZE,
        })
    }

    /// Gives up the log's lock: the run is complete, others may deliver it.
    pub fn unlock(&self) -> io::Result<()> {
        unlock(self.out.get_ref())
    }

    /// Flushes buffered chunks and asks the OS to persist them.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// Links `path` to the file at `from`, failing if `path` exists: unlike a rename, a link never
/// replaces a log of the same name that another start made meanwhile. A file system without
/// links gets a rename after a check for the name.
fn give_name(from: &Path, path: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists && !path.exists() => {
            std::fs::rename(from, path)
        }
        linked => linked,
    }
}

impl<W: Write> LogWriter<W> {
    /// Starts a log on `out`, writing the file header.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&FILE_HEADER)?;
        Ok(Self {
            out,
            block_used: FILE_HEADER.len(),
        })
    }

    /// Appends one record's bytes as a FULL chunk or a FIRST/MIDDLE.../LAST sequence.
    pub fn append(&mut self, mut payload: &[u8]) -> io::Result<()> {
        let mut first = true;
        loop {
            let left = BLOCK_SIZE - self.block_used;
            if left < CHUNK_HEADER {
                // Too small for a chunk header: pad the block with zeros.
                self.out.write_all(&[0u8; CHUNK_HEADER][..left])?;
                self.block_used = 0;
                continue;
            }
            let room = left - CHUNK_HEADER;
            let (take, last) = if payload.len() <= room {
                (payload.len(), true)
            } else {
                (room, false)
            };
            let kind = match (first, last) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, false) => MIDDLE,
                (false, true) => LAST,
            };
            self.write_chunk(kind, &payload[..take])?;
            payload = &payload[take..];
            first = false;
            if last {
                return Ok(());
            }
        }
    }

    fn write_chunk(&mut self, kind: u8, data: &[u8]) -> io::Result<()> {
        let mut header = [0u8; CHUNK_HEADER];
        header[..4].copy_from_slice(&chunk_crc(kind, data).to_le_bytes());
        // A chunk never exceeds a block, so its length always fits in 16 bits.
        header[4..6].copy_from_slice(&(data.len() as u16).to_le_bytes());
        header[6] = kind;
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        self.block_used += CHUNK_HEADER + data.len();
        if self.block_used == BLOCK_SIZE {
            self.block_used = 0;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Why a log could not be read past some point.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("not a W&B transaction log (bad file header)")]
    BadHeader,
}

/// Reads records back from a whole log held in memory. Corrupt chunks are skipped up to the
/// next block, as wandb's readers do; a truncated tail ends the log.
pub struct LogReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Chunks dropped because their checksum or framing was wrong.
    pub corrupt_chunks: usize,
}

impl<'a> LogReader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, ReadError> {
        if data.len() < FILE_HEADER.len() || data[..FILE_HEADER.len()] != FILE_HEADER {
            return Err(ReadError::BadHeader);
        }
        Ok(Self {
            data,
            pos: FILE_HEADER.len(),
            corrupt_chunks: 0,
        })
    }

    /// Where reading stands: after a record, where it ends.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn skip_to_next_block(&mut self) {
        self.pos = (self.pos / BLOCK_SIZE + 1) * BLOCK_SIZE;
    }

    /// The next chunk as (type, payload), or None at the end of the data.
    fn next_chunk(&mut self) -> Option<(u8, &'a [u8])> {
        loop {
            let left_in_block = BLOCK_SIZE - self.pos % BLOCK_SIZE;
            if left_in_block < CHUNK_HEADER {
                self.pos += left_in_block;
            }
            if self.pos + CHUNK_HEADER > self.data.len() {
                return None;
            }
            let header = &self.data[self.pos..self.pos + CHUNK_HEADER];
            let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let len = u16::from_le_bytes([header[4], header[5]]) as usize;
            let kind = header[6];
            if header.iter().all(|&b| b == 0) {
                // Zero padding (or a pre-allocated tail): nothing more in this block.
                self.skip_to_next_block();
                continue;
            }
            let start = self.pos + CHUNK_HEADER;
            let end = start + len;
            let fits_block = (self.pos % BLOCK_SIZE) + CHUNK_HEADER + len <= BLOCK_SIZE;
            if !fits_block || !(FULL..=LAST).contains(&kind) {
                self.corrupt_chunks += 1;
                self.skip_to_next_block();
                continue;
            }
            if end > self.data.len() {
                return None;
            }
            let payload = &self.data[start..end];
            if chunk_crc(kind, payload) != crc {
                self.corrupt_chunks += 1;
                self.skip_to_next_block();
                continue;
            }
            self.pos = end;
            return Some((kind, payload));
        }
    }
}

impl Iterator for LogReader<'_> {
    type Item = Vec<u8>;

    /// The next whole record's bytes.
    fn next(&mut self) -> Option<Vec<u8>> {
        let mut partial: Option<Vec<u8>> = None;
        loop {
            let corrupt_before = self.corrupt_chunks;
            let (kind, payload) = self.next_chunk()?;
            if self.corrupt_chunks != corrupt_before {
                // A chunk was dropped on the way: what was gathered has a hole in it.
                partial = None;
            }
            match (kind, partial.as_mut()) {
                (FULL, None) => return Some(payload.to_vec()),
                (FIRST, None) => partial = Some(payload.to_vec()),
                (MIDDLE, Some(buf)) => buf.extend_from_slice(payload),
                (LAST, Some(buf)) => {
                    buf.extend_from_slice(payload);
                    return partial;
                }
                // Out of sequence: drop what was gathered and resync on this chunk.
                (FULL, Some(_)) => {
                    self.corrupt_chunks += 1;
                    return Some(payload.to_vec());
                }
                (FIRST, Some(_)) => {
                    self.corrupt_chunks += 1;
                    partial = Some(payload.to_vec());
                }
                _ => self.corrupt_chunks += 1,
            }
        }
    }
}

/// Reads a whole log file's records.
pub fn read_file(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let reader =
        LogReader::new(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(reader.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_all(records: &[Vec<u8>]) -> Vec<u8> {
        let mut writer = LogWriter::new(Vec::new()).unwrap();
        for record in records {
            writer.append(record).unwrap();
        }
        writer.out
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn a_new_log_never_replaces_one_made_meanwhile() {
        let dir = std::env::temp_dir().join(format!("wandb-nexus-txlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, new) = (dir.join("run-x.wandb"), dir.join("run-x.wandb.new"));
        std::fs::write(&path, b"the other start's log").unwrap();
        std::fs::write(&new, b"ours").unwrap();
        let error = give_name(&new, &path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"the other start's log");
        std::fs::remove_file(&new).unwrap();
        let error = LogWriter::create(&path).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert!(!new.exists(), "left under its temporary name");
        assert_eq!(std::fs::read(&path).unwrap(), b"the other start's log");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_and_first_chunk_bytes() {
        let data = write_all(&[b"abc".to_vec()]);
        assert_eq!(&data[..7], &[0x3a, 0x57, 0x26, 0x42, 0xe1, 0xbe, 0x00]);
        let crc = crc32fast::hash(&[FULL, b'a', b'b', b'c']);
        assert_eq!(&data[7..11], &crc.to_le_bytes());
        assert_eq!(&data[11..14], &[3, 0, FULL]);
        assert_eq!(&data[14..], b"abc");
    }

    #[test]
    fn crc_matches_zlib_convention() {
        // zlib.crc32(b"\x01abc") == 0x539d20a9 (checked with Python's zlib).
        assert_eq!(chunk_crc(FULL, b"abc"), 0x539d_20a9);
    }

    #[test]
    fn round_trip_small_and_spanning_records() {
        let records = vec![
            pattern(10, 1),
            pattern(BLOCK_SIZE * 2 + 123, 2),
            Vec::new(),
            pattern(BLOCK_SIZE - 7 - 7, 3),
            pattern(40_000, 4),
            pattern(1, 5),
        ];
        let data = write_all(&records);
        let reader = LogReader::new(&data).unwrap();
        let read: Vec<_> = reader.collect();
        assert_eq!(read, records);
    }

    #[test]
    fn large_record_uses_first_middle_last_within_blocks() {
        let record = pattern(BLOCK_SIZE * 3, 9);
        let data = write_all(&[record]);
        let mut reader = LogReader::new(&data).unwrap();
        let mut kinds = Vec::new();
        while let Some((kind, _)) = reader.next_chunk() {
            kinds.push(kind);
        }
        assert_eq!(kinds, vec![FIRST, MIDDLE, MIDDLE, LAST]);
        // Every chunk header starts inside a block with room for it.
        assert_eq!(data.len(), BLOCK_SIZE * 3 + 7 + 4 * CHUNK_HEADER);
    }

    #[test]
    fn block_tail_smaller_than_header_is_zero_padded() {
        // Leave exactly 3 bytes in block 0: 32768 - 7 (file header) - 7 (chunk) - 3.
        let first = pattern(BLOCK_SIZE - 7 - 7 - 3, 1);
        let data = write_all(&[first.clone(), b"next".to_vec()]);
        assert_eq!(&data[BLOCK_SIZE - 3..BLOCK_SIZE], &[0, 0, 0]);
        assert_eq!(data[BLOCK_SIZE + 6], FULL);
        let read: Vec<_> = LogReader::new(&data).unwrap().collect();
        assert_eq!(read, vec![first, b"next".to_vec()]);
    }

    #[test]
    fn exactly_seven_bytes_left_gives_empty_first_chunk() {
        let first = pattern(BLOCK_SIZE - 7 - 7 - 7, 1);
        let second = pattern(100, 2);
        let data = write_all(&[first.clone(), second.clone()]);
        let at = BLOCK_SIZE - 7;
        assert_eq!(&data[at + 4..at + 7], &[0, 0, FIRST]);
        let read: Vec<_> = LogReader::new(&data).unwrap().collect();
        assert_eq!(read, vec![first, second]);
    }

    #[test]
    fn corrupt_chunk_is_skipped_to_next_block() {
        let records = vec![pattern(100, 1), pattern(BLOCK_SIZE, 2), pattern(50, 3)];
        let mut data = write_all(&records);
        data[7 + CHUNK_HEADER + 5] ^= 0xff;
        let mut reader = LogReader::new(&data).unwrap();
        let read: Vec<_> = reader.by_ref().collect();
        // The first record and the FIRST chunk of the second share block 0 and are lost; the
        // rest of the second record is out of sequence; the third survives.
        assert_eq!(read, vec![records[2].clone()]);
        assert!(reader.corrupt_chunks >= 1);
    }

    #[test]
    fn corrupt_middle_chunk_drops_its_whole_record() {
        // FIRST in block 0, MIDDLE filling block 1, LAST in block 2.
        let records = vec![pattern(BLOCK_SIZE * 2, 1), pattern(10, 2)];
        let mut data = write_all(&records);
        data[BLOCK_SIZE + 100] ^= 1;
        let read: Vec<_> = LogReader::new(&data).unwrap().collect();
        assert_eq!(read, vec![records[1].clone()]);
    }

    #[test]
    fn truncated_tail_ends_the_log() {
        let records = vec![pattern(100, 1), pattern(200, 2)];
        let data = write_all(&records);
        let read: Vec<_> = LogReader::new(&data[..data.len() - 1]).unwrap().collect();
        assert_eq!(read, vec![records[0].clone()]);
    }

    #[test]
    fn rejects_foreign_header() {
        assert_eq!(
            LogReader::new(b":W&B\xe1\xbe\x01").err(),
            Some(ReadError::BadHeader)
        );
        assert_eq!(LogReader::new(b"").err(), Some(ReadError::BadHeader));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Record sizes: small ones, ones that end near a block boundary, and ones that span
        /// up to three blocks (FIRST, MIDDLE..., LAST). Records are made from a size and a
        /// seed, as generating every byte would be slow.
        fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
            let size = prop_oneof![
                0..64usize,
                BLOCK_SIZE - 2 * CHUNK_HEADER - 16..BLOCK_SIZE + 16,
                0..3 * BLOCK_SIZE,
            ];
            prop::collection::vec((size, any::<u8>()), 0..8).prop_map(|sizes| {
                sizes
                    .into_iter()
                    .map(|(len, seed)| pattern(len, seed))
                    .collect()
            })
        }

        /// The log of `records`, with the offset at which each record's last chunk ends.
        fn write_with_ends(records: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
            let mut writer = LogWriter::new(Vec::new()).unwrap();
            let ends = records
                .iter()
                .map(|record| {
                    writer.append(record).unwrap();
                    writer.out.len()
                })
                .collect();
            (writer.out, ends)
        }

        fn is_subsequence(read: &[Vec<u8>], written: &[Vec<u8>]) -> bool {
            let mut rest = written.iter();
            read.iter().all(|record| rest.any(|w| w == record))
        }

        proptest! {
            #[test]
            fn written_records_read_back(records in records()) {
                let data = write_all(&records);
                let mut reader = LogReader::new(&data).unwrap();
                prop_assert_eq!(reader.by_ref().collect::<Vec<_>>(), records);
                prop_assert_eq!(reader.corrupt_chunks, 0);
            }

            #[test]
            fn a_cut_log_reads_back_the_whole_records_before_the_cut(
                records in records(),
                cut in any::<prop::sample::Index>(),
            ) {
                let (data, ends) = write_with_ends(&records);
                let len = FILE_HEADER.len() + cut.index(data.len() - FILE_HEADER.len() + 1);
                let whole = ends.iter().filter(|&&end| end <= len).count();
                let read: Vec<_> = LogReader::new(&data[..len]).unwrap().collect();
                prop_assert_eq!(read, &records[..whole]);
            }

            #[test]
            fn a_changed_byte_never_makes_up_records(
                records in records(),
                at in any::<prop::sample::Index>(),
                mask in 1..=u8::MAX,
            ) {
                let mut data = write_all(&records);
                let at = at.index(data.len());
                data[at] ^= mask;
                if let Ok(reader) = LogReader::new(&data) {
                    let read: Vec<_> = reader.collect();
                    prop_assert!(is_subsequence(&read, &records), "byte {} changed", at);
                }
            }
        }
    }
}
