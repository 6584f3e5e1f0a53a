//! Facts about the machine and clock that run records carry: host name, OS, run ids and time
//! stamps. Read through libc so that nothing is spawned and no Python module is imported.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

static PID: AtomicU32 = AtomicU32::new(0);

/// This process's id, without a system call after the first: glibc no longer caches
/// getpid(), and run calls check it (a forked child must not use its parent's run). A fork
/// handler clears the cache in the child.
pub fn current_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        extern "C" fn forget_pid() {
            PID.store(0, Ordering::Relaxed);
        }
        // SAFETY: registers a handler that only stores to an atomic, which is async-signal
        // safe as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// `time` as Unix seconds (0 before the epoch).
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Now, as Unix seconds.
pub fn unix_now() -> f64 {
    unix_seconds(SystemTime::now())
}

/// A process-wide value that a forked child must not share: the child makes its own and
/// leaks the parent's, since dropping it could join threads or close connections that do not
/// exist in the child.
pub struct ProcessLocal<T>(Mutex<Option<(u32, T)>>);

impl<T> Default for ProcessLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ProcessLocal<T> {
    pub const fn new() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: Clone> ProcessLocal<T> {
    /// This process's value if `usable` accepts it; otherwise `make`'s, which is kept. A value
    /// of this process that `usable` refuses is dropped.
    pub fn get_or_make<E>(
        &self,
        usable: impl Fn(&T) -> bool,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let pid = current_pid();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            Some((owner, value)) if owner == pid && usable(&value) => {
                *slot = Some((owner, value.clone()));
                return Ok(value);
            }
            Some((owner, value)) if owner != pid => std::mem::forget(value),
            _ => {}
        }
        let value = make()?;
        *slot = Some((pid, value.clone()));
        Ok(value)
    }

    /// This process's value, if it has made one.
    pub fn get(&self) -> Option<T> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some((owner, value)) if *owner == current_pid() => Some(value.clone()),
            _ => None,
        }
    }
}

const RUN_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Eight characters from `[a-z0-9]`, drawn from the OS's CSPRNG as wandb does, mixed with the
/// clocks: copies of a SnapStart snapshot start with one kernel state, and whether every
/// kernel reseeds its random source on restore is not documented; their clocks differ.
pub fn random_run_id() -> String {
    let mut id = String::with_capacity(8);
    while id.len() < 8 {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        // XOR with anything independent of them keeps uniform bytes uniform.
        for (byte, noise) in bytes.iter_mut().zip(clock_noise()) {
            *byte ^= noise;
        }
        // Rejection sampling keeps the characters uniform: 252 = 7 * 36.
        id.extend(
            bytes
                .iter()
                .filter(|&&b| b < 252)
                .map(|&b| RUN_ID_ALPHABET[(b % 36) as usize] as char),
        );
    }
    id.truncate(8);
    id
}

/// 16 bytes that differ between calls and between machines started from one snapshot: a hash
/// of the wall clock and the time since boot, in nanoseconds.
fn clock_noise() -> [u8; 16] {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let nanos = |clock| {
        // SAFETY: timespec is plain old data that clock_gettime fills in.
        let mut time: libc::timespec = unsafe { std::mem::zeroed() };
        unsafe { libc::clock_gettime(clock, &mut time) };
        (time.tv_sec, time.tv_nsec)
    };
    let moment = (nanos(libc::CLOCK_REALTIME), nanos(libc::CLOCK_BOOTTIME));
    let mut noise = [0u8; 16];
    for (half, chunk) in noise.chunks_mut(8).enumerate() {
        let mut hasher = DefaultHasher::new();
        (half, moment).hash(&mut hasher);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    noise
}

fn uname() -> Option<libc::utsname> {
    // SAFETY: utsname is plain old data; uname fills it in.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    (unsafe { libc::uname(&mut name) } == 0).then_some(name)
}

fn field(chars: &[libc::c_char]) -> String {
    // SAFETY: uname NUL-terminates every field within its array.
    unsafe { CStr::from_ptr(chars.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn hostname() -> String {
    uname().map(|u| field(&u.nodename)).unwrap_or_default()
}

/// Like Python's `platform.platform()`: `Linux-<release>-<machine>`.
pub fn os_description() -> String {
    uname()
        .map(|u| {
            format!(
                "{}-{}-{}",
                field(&u.sysname),
                field(&u.release),
                field(&u.machine)
            )
        })
        .unwrap_or_default()
}

/// wandb's telemetry platform string, e.g. `linux-x86_64`.
pub fn platform() -> String {
    let machine = uname().map(|u| field(&u.machine)).unwrap_or_default();
    format!("{}-{machine}", std::env::consts::OS)
}

/// `YYYYMMDD_HHMMSS` in local time, as in wandb's run directory names.
pub fn local_time_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as libc::time_t;
    // SAFETY: tm is plain old data; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return utc_parts(secs as i64).compact();
    }
    DateTime {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec as u32,
    }
    .compact()
}

/// RFC 3339 UTC with nanoseconds, as protojson writes timestamps.
pub fn utc_rfc3339(seconds: i64, nanos: i32) -> String {
    let t = utc_parts(seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, nanos
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC, the stamp wandb puts on console lines.
pub fn utc_console_stamp(seconds: i64, nanos: i32) -> String {
    let t = utc_parts(seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        nanos / 1000
    )
}

struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl DateTime {
    fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Civil date from Unix seconds (the days-from-civil algorithm, inverted).
fn utc_parts(seconds: i64) -> DateTime {
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_pid_is_the_process_id() {
        assert_eq!(current_pid(), std::process::id());
        assert_eq!(current_pid(), std::process::id());
    }

    #[test]
    fn run_ids_are_eight_lowercase_alphanumerics() {
        let a = random_run_id();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|b| RUN_ID_ALPHABET.contains(&b)));
        assert_ne!(a, random_run_id());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(utc_rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-25T08:16:28Z
        assert_eq!(
            utc_rfc3339(1_795_594_588, 5),
            "2026-11-25T08:16:28.000000005Z"
        );
        assert_eq!(
            utc_rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
