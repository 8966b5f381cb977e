//! File windows hashed straight from the page cache, without `read()`'s copy, and safe against
//! a file that shrinks while it is mapped.
//!
//! Touching a mapped page past the end of a truncated file raises SIGBUS, which would kill the
//! process. A process-wide SIGBUS handler looks the faulting address up among the windows open
//! now; for one of ours it maps zero pages over the rest of the window and marks it
//! [`MappedWindow::faulted`], so the hash completes (over zeros) and the caller reports the
//! bytes unreadable. Faults anywhere else go to the handler that was there before (Rust's own
//! stack-overflow handler, or the default action).

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Windows open at once; a worker that finds none free reads instead.
const SLOTS: usize = 64;

/// One open window's address range, readable from the signal handler without locks.
struct Slot {
    busy: AtomicBool,
    /// Page-aligned start, 0 while not published.
    start: AtomicUsize,
    /// Page-aligned end (exclusive).
    end: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    busy: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static WINDOWS: [Slot; SLOTS] = [FREE; SLOTS];
static INSTALL: Once = Once::new();
/// The SIGBUS action before ours, which faults outside our windows are handed to.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Bytes of a file mapped read-only, hashed in place.
pub struct MappedWindow {
    map: memmap2::Mmap,
    slot: &'static Slot,
}

impl MappedWindow {
    /// Maps `len` bytes of `file` from `offset`, or `None` where mapping is not possible or
    /// not safe to start (the range goes past the file's end now, no free slot, no handler):
    /// the caller then reads.
    #[must_use]
    pub fn new(file: &File, offset: u64, len: usize) -> Option<Self> {
        if len == 0 || !install_handler() {
            return None;
        }
        let size = file.metadata().ok()?.len();
        if offset.checked_add(len as u64)? > size {
            return None;
        }
        let slot = WINDOWS
            .iter()
            .find(|slot| !slot.busy.swap(true, Ordering::Acquire))?;
        // SAFETY: the mapping is read-only and private to this window; a concurrent
        // truncation cannot make reading it undefined behaviour because the SIGBUS handler
        // registered below replaces pages that vanish with zero pages before the read resumes.
        let map = match unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)
        } {
            Ok(map) => map,
            Err(_) => {
                slot.busy.store(false, Ordering::Release);
                return None;
            }
        };
        let _ = map.advise(memmap2::Advice::Sequential);
        let page = page_size();
        let start = map.as_ptr() as usize & !(page - 1);
        let end = (map.as_ptr() as usize + len).next_multiple_of(page);
        slot.faulted.store(false, Ordering::Relaxed);
        slot.end.store(end, Ordering::Release);
        slot.start.store(start, Ordering::Release);
        Some(Self { map, slot })
    }

    /// The window's bytes; where the file shrank after mapping, zeros (see [`Self::faulted`]).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Whether a page could not be read (the file shrank): the bytes are then not the file's.
    #[must_use]
    pub fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::Acquire)
    }
}

impl Drop for MappedWindow {
    fn drop(&mut self) {
        // Unpublished before the unmap, so a later mapping at this address is never ours.
        self.slot.start.store(0, Ordering::Release);
        self.slot.busy.store(false, Ordering::Release);
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Installs the SIGBUS handler once; false when the system refused it.
fn install_handler() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: both sigaction structs are fully initialised (zeroed, then the fields set);
        // `on_sigbus` has the SA_SIGINFO signature.
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&raw mut ours.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &raw const ours, &raw mut previous) == 0 {
                let _ = PREVIOUS.set(previous);
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// Only async-signal-safe work: atomics, `mmap`, `sigaction`.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &WINDOWS {
        let start = slot.start.load(Ordering::Acquire);
        let end = slot.end.load(Ordering::Acquire);
        if start != 0 && (start..end).contains(&addr) {
            let page = addr & !(page_size() - 1);
            // SAFETY: `page..end` lies inside a live window of ours (published until its
            // `MappedWindow` is dropped, which happens after the last read); MAP_FIXED replaces
            // those file pages with zero pages and the faulting read resumes on them.
            let zeros = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    end - page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not ours: what would have happened without us.
    match PREVIOUS.get() {
        Some(previous)
            if previous.sa_flags & libc::SA_SIGINFO != 0
                && previous.sa_sigaction != libc::SIG_DFL
                && previous.sa_sigaction != libc::SIG_IGN =>
        {
            // SAFETY: the previous action was installed as a SA_SIGINFO handler.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(previous.sa_sigaction) };
            handler(signal, info, context);
        }
        _ => {
            // SAFETY: resetting to the default action; returning re-runs the faulting access,
            // which then terminates the process as SIGBUS always did.
            unsafe {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &raw const default, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_window_reads_the_file() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        file.write_all(&data).unwrap();
        let window = MappedWindow::new(&file, 12_345, 200_000).unwrap();
        assert_eq!(window.bytes(), &data[12_345..212_345]);
        assert!(!window.faulted());
        assert!(
            MappedWindow::new(&file, 200_000, 100_001).is_none(),
            "past the end"
        );
    }

    #[test]
    fn a_file_truncated_under_a_window_reads_zeros_and_is_flagged() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![0xabu8; 1 << 20]).unwrap();
        let window = MappedWindow::new(&file, 0, 1 << 20).unwrap();
        file.set_len(10_000).unwrap();
        // Without the handler this read kills the test process with SIGBUS.
        let ones = window.bytes().iter().filter(|&&b| b == 0xab).count();
        assert!(window.faulted());
        assert_eq!(ones, 10_000, "the bytes still in the file, then zeros");
        drop(window);
        let again = MappedWindow::new(&file, 0, 10_000).unwrap();
        assert!(again.bytes().iter().all(|&b| b == 0xab));
        assert!(!again.faulted());
    }
}
