//! A program on a pseudo-terminal, its screen read back by a VT parser (`vt100`), as a person
//! at a terminal would see it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

pub const ROWS: u16 = 40;
pub const COLUMNS: u16 = 120;

/// The terminal's line discipline flags that raw mode clears and a program must restore.
const COOKED: libc::tcflag_t = libc::ICANON | libc::ECHO | libc::ISIG;

pub struct Pty {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    /// The local flags before the program ran.
    cooked: libc::tcflag_t,
}

impl Pty {
    /// Runs `program args` on a fresh ROWS x COLUMNS terminal (TERM=xterm-256color, Mesa
    /// quiet, no user config file).
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLUMNS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(program);
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.env("XDG_RUNTIME_DIR", "/tmp");
        command.env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests");
        command.env_remove("PEERHASH_LOG");
        let child = pair
            .slave
            .spawn_command(command)
            .expect("spawning on the pty");
        // Only the child holds the terminal side now: reads end when it exits.
        drop(pair.slave);
        let master = pair.master;
        let cooked = local_flags(master.as_ref());
        let writer = master.take_writer().expect("the pty's input");
        let mut read = master.try_clone_reader().expect("the pty's output");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            // EIO once the terminal side is closed ends the loop.
            while let Ok(n @ 1..) = read.read(&mut chunk) {
                sink.lock().expect("output").extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            child,
            master,
            writer,
            output,
            reader: Some(reader),
            cooked,
        }
    }

    /// Everything the program wrote so far, escape sequences included.
    pub fn output(&self) -> Vec<u8> {
        self.output.lock().expect("output").clone()
    }

    /// The screen as the output so far leaves it.
    pub fn screen(&self) -> vt100::Screen {
        screen_of(&self.output())
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).expect("typing on the pty");
        self.writer.flush().expect("typing on the pty");
    }

    /// Waits up to `limit` for the program to exit and for its last output; its exit code.
    pub fn wait(&mut self, limit: Duration) -> u32 {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the program ran past {limit:?}; its screen:\n{}",
                    self.screen().contents()
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the pty reader");
        }
        status.exit_code()
    }

    /// Whether the terminal is back in the mode it was in before the program ran (echo,
    /// line editing, signals from Ctrl-C).
    pub fn modes_restored(&self) -> bool {
        local_flags(self.master.as_ref()) & COOKED == self.cooked & COOKED
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The screen `bytes` leave on a fresh terminal.
pub fn screen_of(bytes: &[u8]) -> vt100::Screen {
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("a terminal size is not zero");
    let mut parser = vt100::Parser::new(size(ROWS), size(COLUMNS), 0);
    parser.process(bytes);
    parser.screen().clone()
}

/// The terminal's local mode flags (on Linux the master reports the terminal side's).
fn local_flags(master: &dyn MasterPty) -> libc::tcflag_t {
    let fd = master.as_raw_fd().expect("a unix pty");
    // SAFETY: termios is plain data, filled in by tcgetattr on a descriptor we own.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is the open master of this pty; termios points to a valid struct.
    let rc = unsafe { libc::tcgetattr(fd, &raw mut termios) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    termios.c_lflag
}
