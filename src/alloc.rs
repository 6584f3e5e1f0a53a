//! The allocator of the Rust side: mimalloc. log() builds a row on the caller's thread and
//! the writer thread frees it; glibc's malloc serialises such frees on an arena lock, which
//! made up most of log()'s cost. mimalloc frees across threads without a lock.

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (v3, the version the crate builds).
const ARENA_EAGER_COMMIT: mi_option_t = 4;

/// Runs when the library is loaded, before its first allocation: by default mimalloc commits
/// its first arena at once, which costs several MiB of resident memory that a Lambda
/// function pays for; committed on use, the process stays as small as with glibc.
extern "C" fn configure() {
    // SAFETY: sets a plain option; mimalloc reads options at its first allocation.
    unsafe { mi_option_set(ARENA_EAGER_COMMIT, 0) };
}

#[used]
#[link_section = ".init_array"]
static CONFIGURE: extern "C" fn() = configure;
