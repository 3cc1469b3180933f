//! The subcommands.

/// `println!` that tolerates a closed stdout (`… | head`): output stops, the command still finishes and
/// returns its real exit code. Other write errors propagate with `?`.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::cli::Stdout, $($t)*)?
    }};
}

/// `print!` with the same tolerance.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!($crate::cli::Stdout, $($t)*)?
    }};
}

pub mod actor;
pub mod audit;
pub mod bulk;
pub mod connect;
pub mod fail;
pub mod outbox;
pub mod serve;
pub mod settle;
pub mod sim_server;
pub mod simulate;
pub mod tables;
pub mod transition;
pub mod watch;

/// Standard output that swallows `BrokenPipe`: a reader that went away is not an error of ours.
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stdout().lock().write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stdout().lock().flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        }
    }
}

/// Writes one line to stdout and flushes it (a closed stdout is not an error).
pub fn write_line(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = Stdout;
    writeln!(out, "{line}")?;
    out.flush()
}
