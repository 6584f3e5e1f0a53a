//! The run's writer: a thread that takes events from the run, encodes them as `Record`s into
//! the transaction log and keeps the run's files (`files/`) up to date, so that `log()` only
//! converts and hands off.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::api::delivery::{self, Delivery, Finished, Upload};
use crate::core::runtime::runtime;
use crate::core::system;
use crate::core::values::{Entry, Tree, Value};
use crate::error::Error;
use crate::log::records::{
    history_record, ArtifactRecord, ConfigRecord, FilesItem, FilesRecord, HistoryEncoder, Item,
    OutputRawRecord, Record, RecordInfo, RecordType, Row, SummaryRecord, Timestamp,
};
use crate::log::txlog::LogWriter;
use crate::media::store::{MediaStore, Owner, Stored};

pub enum Event {
    /// A record built by the run (header, run, environment, metric, exit, ...); boxed, as
    /// records are rare and large, and every queued event takes the largest variant's room.
    Record(Box<RecordType>),
    History {
        row: Row,
        /// Its seq in the rows journal; 0 when it is not there.
        seq: u64,
    },
    Summary {
        update: Vec<Entry>,
        remove: Vec<Vec<String>>,
    },
    Config {
        update: Vec<Entry>,
    },
    Output {
        stderr: bool,
        time: Timestamp,
        text: String,
    },
    /// Hands everything written so far to the OS and, for a live run, to the server (giving
    /// up at the deadline, if any). The writer does not wait for the server.
    Flush {
        deadline: Option<tokio::time::Instant>,
        reply: std_mpsc::SyncSender<Finished>,
    },
    /// Writes the run files, closes the log and, for a live run, completes delivery.
    Finish {
        /// Boxed like a record: every queued event takes the largest variant's room.
        files: Box<RunFiles>,
        exit_code: i32,
        reply: std_mpsc::SyncSender<Finished>,
    },
}

impl Event {
    pub fn record(record: RecordType) -> Self {
        Self::Record(Box::new(record))
    }

    /// The event's share of the writer's backlog: a row counts its keys, as its memory grows
    /// with them, and the bytes of the media it holds (an image's pixels until encoded).
    fn backlog_units(&self) -> usize {
        match self {
            Event::History { row, .. } => {
                1 + row.values.len() + row.values.media_bytes() / UNIT_BYTES
            }
            _ => 1,
        }
    }
}

/// A live run's delivery: how often it transmits on its own (never, for a deferred run),
/// and whether finish completes it (a deferred run is synced after finish instead).
pub struct Online {
    pub delivery: Delivery,
    pub interval: Option<std::time::Duration>,
    pub deliver_at_finish: bool,
}

/// The contents of the run files written at finish.
pub struct RunFiles {
    pub config: Tree,
    pub summary: Tree,
    pub metadata: Value,
}

/// Where a run's writer puts things.
pub struct Paths {
    pub log: PathBuf,
    pub files_dir: PathBuf,
    /// Artifact copies of logged tables, until they are uploaded.
    pub staging_dir: PathBuf,
}

/// How long the writer lets events gather after a batch before it looks again; log() calls
/// in that time cost no wake-up. Short, since what gathers is memory the caller has not
/// reused yet: at 2 ms, the first thousand rows of a run each paid for page faults (a median
/// of 2.04 µs per call over the first 10k against 1.70 µs at 0.5 ms, measured 10 times each).
const BATCH_WINDOW: Duration = Duration::from_micros(500);

/// How much the writer may fall behind (in `Event::backlog_units`, about 100 bytes each)
/// before senders wait for it: a loop logging faster than the disk takes rows must not grow
/// memory without bound (a Lambda function may have 128 MB in all).
const MAX_BACKLOG: usize = 1 << 16;
/// The bytes a backlog unit stands for.
const UNIT_BYTES: usize = 100;

/// The events sent and not yet taken by the writer, and what senders and writer tell each
/// other. A send is a push under the lock; the writer takes everything queued at once.
#[derive(Default)]
struct Queue {
    events: Vec<Event>,
    /// The `backlog_units` of `events`.
    units: usize,
    /// The writer sleeps until woken: it found nothing to do.
    writer_idle: bool,
    /// The run dropped its sender: the writer ends once it has written what is queued.
    sender_gone: bool,
    /// The writer has ended: what is sent now goes nowhere.
    writer_gone: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes senders waiting for the writer to take the queue.
    taken: Condvar,
    /// The queue holds more than `MAX_BACKLOG` units; readable without the lock.
    behind: AtomicBool,
}

/// What the writer found in the queue.
enum Taken {
    Events,
    Nothing,
    SenderGone,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing is left half-changed under this lock: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the queued events into `batch` (empty, and keeping its room for the next time).
    /// With nothing queued, `idle` marks the writer as sleeping until a sender wakes it.
    fn take(&self, batch: &mut Vec<Event>, idle: bool) -> Taken {
        let mut queue = self.lock();
        if queue.events.is_empty() {
            if queue.sender_gone {
                return Taken::SenderGone;
            }
            queue.writer_idle = idle;
            return Taken::Nothing;
        }
        std::mem::swap(&mut queue.events, batch);
        queue.units = 0;
        // Only senders over the bound wait, so only they need waking.
        if self.behind.swap(false, Ordering::Relaxed) {
            self.taken.notify_all();
        }
        Taken::Events
    }
}

/// Marks the writer as gone when its thread ends, by returning or by a panic, so that no
/// sender waits for it.
struct WriterGone(Arc<Shared>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.writer_gone = true;
        queue.events.clear();
        self.0.behind.store(false, Ordering::Relaxed);
        self.0.taken.notify_all();
    }
}

/// The run's end of the writer's queue. Sending wakes the writer only when it sleeps with
/// nothing to do, or for a flush or finish: a burst of log() calls makes no system calls.
pub struct EventSender {
    shared: Arc<Shared>,
    writer: std::thread::Thread,
    /// The process whose thread the writer is.
    pid: u32,
}

impl EventSender {
    /// Queues an event without waiting: the caller may hold locks (and the GIL). When the
    /// writer has fallen behind, the caller then waits with `wait_for_writer`.
    pub fn send(&self, event: Event) {
        let urgent = matches!(event, Event::Flush { .. } | Event::Finish { .. });
        let wake = {
            let mut queue = self.shared.lock();
            if queue.writer_gone {
                return;
            }
            queue.units += event.backlog_units();
            queue.events.push(event);
            if queue.units > MAX_BACKLOG {
                self.shared.behind.store(true, Ordering::Relaxed);
            }
            std::mem::take(&mut queue.writer_idle) || urgent
        };
        if wake {
            self.writer.unpark();
        }
    }

    pub fn is_behind(&self) -> bool {
        self.shared.behind.load(Ordering::Relaxed)
    }

    /// If the writer is behind, waits until it has taken the queue (or ended).
    pub fn wait_for_writer(&self) {
        if !self.is_behind() {
            return;
        }
        // It may be letting events gather: it takes them now.
        self.writer.unpark();
        let mut queue = self.shared.lock();
        while queue.units > MAX_BACKLOG && !queue.writer_gone {
            queue = self
                .shared
                .taken
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        // A forked child has no writer to tell, and the lock may have been held at the fork.
        if system::current_pid() != self.pid {
            return;
        }
        self.shared.lock().sender_gone = true;
        self.writer.unpark();
    }
}

/// Opens the log, writes `opening` to it and hands that to the OS, then starts the writer
/// thread (and, online, the delivery task); events sent before the first error are stored.
pub fn start(
    paths: Paths,
    owner: Owner,
    online: Option<Online>,
    journal_progress: Option<Arc<AtomicU64>>,
    opening: Vec<Event>,
) -> Result<EventSender, Error> {
    let log = LogWriter::create(&paths.log)
        .map_err(|e| Error::io(format!("cannot create {}", paths.log.display()), e))?;
    let output_path = paths.files_dir.join("output.log");
    let output = File::create(&output_path)
        .map_err(|e| Error::io(format!("cannot create {}", output_path.display()), e))?;
    let deliver_at_finish = online.as_ref().is_some_and(|o| o.deliver_at_finish);
    // Only a live run needs the I/O runtime: an offline one starts no thread for it.
    let uploads = match online {
        Some(mut online) => {
            let rt = runtime()?;
            let (upload_tx, upload_rx) = unbounded_channel();
            online.delivery.set_files_dir(paths.files_dir.clone());
            rt.spawn(online.delivery.run(upload_rx, online.interval));
            Some(upload_tx)
        }
        None => None,
    };
    let mut sender = Sender {
        log,
        log_path: paths.log,
        uploads,
        deliver_at_finish,
        output: BufWriter::new(output),
        media: MediaStore {
            files_dir: paths.files_dir.clone(),
            staging_dir: paths.staging_dir,
            owner: owner.clone(),
        },
        files_dir: paths.files_dir,
        info: RecordInfo {
            stream_id: owner.run_id,
        },
        num: 0,
        encoded: Vec::new(),
        history: HistoryEncoder::default(),
        failure: None,
        journaled: 0,
        journal_progress,
        log_failed: false,
    };
    for event in opening {
        sender.handle(event);
    }
    sender.flush_to_os();
    let shared = Arc::new(Shared::default());
    let gone = WriterGone(shared.clone());
    let writer = std::thread::Builder::new()
        .name("wandb-nexus-writer".into())
        .spawn(move || sender.run(&gone.0))
        .map_err(|e| Error::io("cannot start the run's writer thread", e))?;
    Ok(EventSender {
        shared,
        writer: writer.thread().clone(),
        pid: system::current_pid(),
    })
}

type FinishRequest = (Box<RunFiles>, i32, std_mpsc::SyncSender<Finished>);

struct Sender {
    log: LogWriter<BufWriter<File>>,
    log_path: PathBuf,
    /// The delivery task of a live run.
    uploads: Option<UnboundedSender<Upload>>,
    deliver_at_finish: bool,
    output: BufWriter<File>,
    files_dir: PathBuf,
    /// Stores the media values of rows and summaries before they are written.
    media: MediaStore,
    info: RecordInfo,
    num: i64,
    /// The record being appended, encoded; kept to reuse its allocation.
    encoded: Vec<u8>,
    history: HistoryEncoder,
    /// The first write error; everything after it is still attempted, and it is reported at
    /// finish.
    failure: Option<String>,
    /// The rows journal's seq of the last row written, and where the journal learns which
    /// rows the OS has.
    journaled: u64,
    journal_progress: Option<Arc<AtomicU64>>,
    /// A write to the log failed: nothing more goes into it.
    log_failed: bool,
}

impl Sender {
    fn run(&mut self, shared: &Shared) {
        let mut batch = Vec::new();
        let mut written = false;
        loop {
            match shared.take(&mut batch, !written) {
                Taken::Events => {
                    for event in batch.drain(..) {
                        if let Some((files, exit_code, reply)) = self.handle(event) {
                            self.flush_to_os();
                            // The caller may have given up waiting; nothing else to tell.
                            let _ = reply.send(self.finish(*files, exit_code));
                            return;
                        }
                    }
                    // Once the OS has the batch, the rows journal may reuse its room: one
                    // write per batch keeps it small while rows stream in.
                    self.flush_to_os();
                    written = true;
                }
                Taken::Nothing if written => {
                    // Hand what was written to the OS, so a killed process keeps it.
                    self.flush_to_os();
                    written = false;
                    std::thread::park_timeout(BATCH_WINDOW);
                }
                Taken::Nothing => std::thread::park(),
                Taken::SenderGone => {
                    self.flush_to_os();
                    return;
                }
            }
        }
    }

    fn flush_to_os(&mut self) {
        if self.log_failed {
            return;
        }
        let flushed = self.log.flush().and_then(|()| self.output.flush());
        let handed = flushed.is_ok();
        self.note(flushed, "cannot write the transaction log");
        if let (true, Some(progress)) = (handed, &self.journal_progress) {
            // The journal may now overwrite these rows: the OS has them in the log.
            progress.store(self.journaled, Ordering::Release);
        }
    }

    /// Writes an event's record; a Finish is handed back to the loop.
    fn handle(&mut self, event: Event) -> Option<FinishRequest> {
        let record = match event {
            Event::Record(record) => *record,
            Event::History { mut row, seq } => {
                let mut stored = Vec::new();
                row.values
                    .visit_values_mut(&mut |value| self.media.resolve(value, &mut stored));
                self.append_stored(stored);
                self.append_history(&row);
                self.journaled = self.journaled.max(seq);
                return None;
            }
            Event::Summary { mut update, remove } => {
                let mut stored = Vec::new();
                for (_, value) in &mut update {
                    self.media.resolve(value, &mut stored);
                }
                self.append_stored(stored);
                RecordType::Summary(SummaryRecord {
                    update: items(update),
                    remove: remove.into_iter().map(removal_item).collect(),
                })
            }
            Event::Config { update } => RecordType::Config(ConfigRecord {
                update: items(update),
                remove: Vec::new(),
            }),
            Event::Output { stderr, time, text } => {
                let written = self.output.write_all(text.as_bytes());
                self.note(written, "cannot write output.log");
                RecordType::OutputRaw(OutputRawRecord {
                    output_type: i32::from(!stderr),
                    timestamp: Some(time),
                    line: text,
                })
            }
            Event::Flush { deadline, reply } => {
                self.flush(deadline, reply);
                return None;
            }
            Event::Finish {
                files,
                exit_code,
                reply,
            } => return Some((files, exit_code, reply)),
        };
        self.append(record);
        None
    }

    fn append(&mut self, record: RecordType) {
        self.num += 1;
        let record = Record {
            num: self.num,
            record_type: Some(record),
            info: Some(self.info.clone()),
        };
        self.encoded.clear();
        record
            .encode(&mut self.encoded)
            .expect("a Vec grows to fit any record");
        self.write_encoded();
        self.deliver(record);
    }

    /// Records what storing media produced, before the row or summary that refers to it:
    /// an artifact, then one FilesRecord per file, as wandb records them.
    fn append_stored(&mut self, stored: Vec<Stored>) {
        for item in stored {
            match item {
                Stored::File(path) => self.append(RecordType::Files(FilesRecord {
                    files: vec![FilesItem {
                        path,
                        policy: 0,
                        r#type: 0,
                    }],
                })),
                Stored::Artifact(artifact) => {
                    self.append(RecordType::Artifact(ArtifactRecord::from(&*artifact)))
                }
                // The value is logged as null; what was logged before is kept.
                Stored::Failed(problem) => eprintln!("wandb-nexus: {problem}"),
            }
        }
    }

    fn append_history(&mut self, row: &Row) {
        self.num += 1;
        self.encoded.clear();
        self.history
            .encode(self.num, row, &self.info, &mut self.encoded);
        self.write_encoded();
        if self.uploads.is_some() {
            self.deliver(history_record(self.num, row, self.info.clone()));
        }
    }

    /// Appends the encoded record, unless the log has failed: a write that failed may have
    /// left part of a record on disk, and one after it would leave a hole in the log rather
    /// than a cut-off end.
    fn write_encoded(&mut self) {
        if self.log_failed {
            return;
        }
        let written = self.log.append(&self.encoded);
        self.log_failed = written.is_err();
        self.note(written, "cannot write the transaction log");
    }

    fn deliver(&self, record: Record) {
        if let Some(uploads) = &self.uploads {
            let _ = uploads.send(Upload::Record(Box::new(record)));
        }
    }

    fn note(&mut self, result: std::io::Result<()>, context: &str) {
        if let Err(err) = result {
            self.failure
                .get_or_insert_with(|| format!("{context}: {err}"));
        }
    }

    /// Stores what was written; a live run's delivery task then sends it and answers.
    fn flush(
        &mut self,
        deadline: Option<tokio::time::Instant>,
        reply: std_mpsc::SyncSender<Finished>,
    ) {
        self.flush_to_os();
        let stored = self.failure.clone().map_or(Ok(()), Err);
        let Some(uploads) = &self.uploads else {
            let _ = reply.send(Finished {
                stored,
                delivered: None,
            });
            return;
        };
        let flush = Upload::Flush {
            stored,
            deadline,
            reply,
        };
        if let Err(unsent) = uploads.send(flush) {
            if let Upload::Flush { stored, reply, .. } = unsent.0 {
                let _ = reply.send(Finished {
                    stored,
                    delivered: Some(Err(delivery_gone())),
                });
            }
        }
    }

    fn finish(&mut self, files: RunFiles, exit_code: i32) -> Finished {
        let config = files.config.to_value();
        for (name, contents) in [
            ("config.yaml", config_yaml(&config)),
            ("wandb-summary.json", files.summary.to_json()),
            ("wandb-metadata.json", files.metadata.to_json()),
        ] {
            let path = self.files_dir.join(name);
            let written = std::fs::write(&path, contents);
            self.note(written, &format!("cannot write {}", path.display()));
        }
        let synced = self
            .log
            .sync()
            .and_then(|()| self.output.get_ref().sync_data());
        self.note(synced, "cannot persist the transaction log");
        let unlocked = self.log.unlock();
        self.note(unlocked, "cannot unlock the transaction log");
        // A deferred run's delivery ends here; the run is synced from its log instead.
        let uploads = self.uploads.take().filter(|_| self.deliver_at_finish);
        let delivered = uploads.map(|uploads| {
            let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
            let finish = Upload::Finish {
                exit_code,
                reply: reply_tx,
            };
            uploads.send(finish).map_err(|_| delivery_gone())?;
            let result = reply_rx.blocking_recv().map_err(|_| delivery_gone())?;
            if result.is_ok() {
                // Delivered whole: `sync` has nothing left to do for this run.
                let _ = std::fs::write(delivery::synced_marker(&self.log_path), b"");
            }
            result
        });
        Finished {
            stored: self.failure.take().map_or(Ok(()), Err),
            delivered,
        }
    }
}

fn delivery_gone() -> Error {
    Error::Comm("the delivery task stopped unexpectedly".into())
}

/// Items of a record, from (path, value) pairs, owned or borrowed.
fn items<V: std::borrow::Borrow<Value>>(
    entries: impl IntoIterator<Item = (Vec<String>, V)>,
) -> Vec<Item> {
    entries
        .into_iter()
        .map(|(path, value)| Item {
            key: String::new(),
            nested_key: path,
            value_json: value.borrow().to_json(),
        })
        .collect()
}

fn removal_item(path: Vec<String>) -> Item {
    Item {
        key: String::new(),
        nested_key: path,
        value_json: String::new(),
    }
}

/// config.yaml holds `{key: {value: v}}` for each top-level key, as wandb writes it.
fn config_yaml(config: &Value) -> String {
    let Value::Map(entries) = config else {
        return String::new();
    };
    let wrapped = Value::Map(
        entries
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    Value::Map(vec![("value".to_string(), value.clone())]),
                )
            })
            .collect(),
    );
    let mut out = String::new();
    crate::core::values::write_yaml(&wrapped, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A sender whose writer is the test itself: it takes events from the returned queue.
    fn sender_without_writer() -> (EventSender, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        let events = EventSender {
            shared: shared.clone(),
            writer: std::thread::current(),
            pid: system::current_pid(),
        };
        (events, shared)
    }

    /// Sends `count` events on a thread of its own, as the run does: each send followed by a
    /// wait for the writer. Returns how many have been sent so far.
    fn send_on_a_thread(
        events: EventSender,
        count: usize,
    ) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let thread = std::thread::spawn(move || {
            for _ in 0..count {
                events.send(Event::Config { update: Vec::new() });
                events.wait_for_writer();
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        (sent, thread)
    }

    fn wait_until_sent(sent: &AtomicUsize, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "the sender stopped early");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Time to go past `count` if it were not held back.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sent.load(Ordering::SeqCst), count);
    }

    #[test]
    fn senders_wait_while_the_writer_is_behind() {
        let (events, shared) = sender_without_writer();
        let (sent, thread) = send_on_a_thread(events, MAX_BACKLOG + 10);
        // The send that goes past the bound waits.
        wait_until_sent(&sent, MAX_BACKLOG);
        // The writer takes the queue: sending goes on.
        let mut batch = Vec::new();
        assert!(matches!(shared.take(&mut batch, false), Taken::Events));
        assert_eq!(batch.len(), MAX_BACKLOG + 1);
        thread.join().unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), MAX_BACKLOG + 10);
        batch.clear();
        assert!(matches!(shared.take(&mut batch, false), Taken::Events));
        assert_eq!(batch.len(), 9);
        // The run's sender is gone with its thread: the writer is told once the queue is empty.
        batch.clear();
        assert!(matches!(shared.take(&mut batch, false), Taken::SenderGone));
    }

    #[test]
    fn senders_do_not_wait_for_a_writer_that_stopped() {
        let (events, shared) = sender_without_writer();
        let (sent, thread) = send_on_a_thread(events, MAX_BACKLOG + 10);
        wait_until_sent(&sent, MAX_BACKLOG);
        drop(WriterGone(shared.clone()));
        thread.join().unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), MAX_BACKLOG + 10);
        assert!(
            shared.lock().events.is_empty(),
            "nothing is queued for a writer that ended"
        );
    }

    #[test]
    fn an_idle_writer_is_woken_once() {
        let (events, shared) = sender_without_writer();
        let mut batch = Vec::new();
        assert!(matches!(shared.take(&mut batch, true), Taken::Nothing));
        events.send(Event::Config { update: Vec::new() });
        assert!(!shared.lock().writer_idle, "the first send wakes it");
        // The wake-up is this thread's park token: park returns at once.
        std::thread::park();
        assert!(matches!(shared.take(&mut batch, true), Taken::Events));
    }
}
