//! The allocator of the Rust side: mimalloc. log() builds a row on the caller's thread and
//! the writer thread frees it; glibc's malloc serialises such frees on an arena lock, which
//! made up most of log()'s cost. mimalloc frees across threads without a lock.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_option_set, mi_option_t, mi_realloc,
    mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// Every mimalloc block is aligned to a word: its sizes are whole words and its pages start
/// aligned.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc through its plain entry points where a block's own alignment is enough (almost
/// every Rust allocation). Its aligned ones cost more even then, and once the caller's pages
/// hold only blocks the writer freed, they took a slow path that over-allocates.
struct Mimalloc;

#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

// SAFETY: each method hands the layout's size to mimalloc, and its alignment whenever it is
// more than mimalloc's blocks have anyway; blocks are freed by mimalloc.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= BLOCK_ALIGN {
            mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

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
