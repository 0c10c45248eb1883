//! Programs whose output may go to a pipe that closes early
//! (`dagger bench sched --csv | head`).
//!
//! Rust programs ignore `SIGPIPE`, so a write to a closed pipe returns an
//! error and `println!` panics on it. Command-line tools are expected to end
//! quietly instead, as `cat` and `grep` do: [`end_quietly_on_closed_pipe`]
//! restores the default action, under which the kernel ends the process the
//! moment it writes to a pipe nobody reads.
//!
//! # Examples
//!
//! The first line of a program's `main`:
//!
//! ```no_run
//! dagger_cli::pipe::end_quietly_on_closed_pipe();
//! for i in 0.. {
//!     println!("{i}"); // `| head` ends the program here, without a panic
//! }
//! ```

/// Makes a write to a closed pipe end the process quietly (the default
/// `SIGPIPE` action) instead of panicking in `println!`. Call it first thing
/// in `main`; it does nothing on platforms without `SIGPIPE`.
pub fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's action to its default installs no handler
    // and touches no memory of this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
