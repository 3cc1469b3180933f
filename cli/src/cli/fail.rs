//! How a command ends: exit codes, and failures with a stable code, reported as one JSON object (with
//! `--json`, or when stdout is not a terminal) or as words on a terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

/// Exit codes, the same for every command.
pub mod exit {
    /// Everything asked was done.
    pub const OK: u8 = 0;
    /// A failure other than the ones below (the tenant, the log, a file, the network).
    pub const FAILURE: u8 = 1;
    /// A state change was refused by compliance policy (for `bulk`: every failed row was a policy refusal).
    pub const POLICY: u8 = 2;
    /// The command line is wrong: an unknown flag, a missing or invalid value (sysexits `EX_USAGE`).
    pub const USAGE: u8 = 64;
    /// Interrupted (Ctrl-C): work in flight was finished and the log synced.
    pub const INTERRUPTED: u8 = 130;
}

/// Codes of failures only the command line reports (the engine's codes, such as `INVALID_CONFIG` or
/// `AUDIT_LOG_CORRUPT`, are used as they are).
pub mod code {
    /// The command line is wrong.
    pub const USAGE: &str = "USAGE";
    /// An input file cannot be read, or is not rows at all.
    pub const INPUT_UNREADABLE: &str = "INPUT_UNREADABLE";
    /// One input row cannot be read; the other rows go on.
    pub const MALFORMED_ROW: &str = "MALFORMED_ROW";
    /// An output path would overwrite the audit log (or one of its companion files).
    pub const OUTPUT_IS_AUDIT_LOG: &str = "OUTPUT_IS_AUDIT_LOG";
    /// `simulate` was pointed at a log that holds records a simulation did not write.
    pub const LOG_NOT_SIMULATED: &str = "LOG_NOT_SIMULATED";
    /// `outbox replay --event-id` names no dead letter.
    pub const NO_SUCH_DEAD_LETTER: &str = "NO_SUCH_DEAD_LETTER";
    /// `simulate`: the simulated tenant accepted READY during a mandatory break (the engine failed).
    pub const COMPLIANCE_FAILURE: &str = "COMPLIANCE_FAILURE";
    /// A file could not be read or written.
    pub const IO_ERROR: &str = "IO_ERROR";
}

/// File identity (device and inode), where the platform has it.
pub mod identity {
    use std::path::Path;

    #[cfg(unix)]
    fn id(m: &std::fs::Metadata) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    }

    #[cfg(not(unix))]
    fn id(_: &std::fs::Metadata) -> (u64, u64) {
        (0, 0)
    }

    /// The identity of an existing file.
    pub fn of(path: &Path) -> Option<(u64, u64)> {
        std::fs::metadata(path)
            .ok()
            .filter(|m| cfg!(unix) && m.is_file())
            .map(|m| id(&m))
    }

    /// Whether two paths name one existing file.
    pub fn same(a: &Path, b: &Path) -> bool {
        of(a).is_some_and(|x| of(b) == Some(x))
    }

    /// The identity of the file stdout writes to, if it is a regular file.
    pub fn of_stdout() -> Option<(u64, u64)> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
            let m = std::fs::File::from(fd).metadata().ok()?;
            m.is_file().then(|| id(&m))
        }
        #[cfg(not(unix))]
        None
    }
}

/// Refuses to run when stdout is the audit log (a shell redirection `>> cxone-audit.jsonl`): results would
/// be written into it. The refusal itself goes to stderr only.
pub fn refuse_stdout_onto(audit_log: &Path) -> Result<(), Failure> {
    if identity::of_stdout().is_some_and(|id| identity::of(audit_log) == Some(id)) {
        return Err(Failure {
            exit: exit::USAGE,
            stderr_only: true,
            ..Failure::new(
                code::OUTPUT_IS_AUDIT_LOG,
                format!(
                    "refusing to write results to stdout: it is the audit log ({}); redirect it elsewhere",
                    audit_log.display()
                ),
            )
        });
    }
    Ok(())
}

/// A failure a command reports: a stable code, words, and the exit code it ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The stable code (`INVALID_CONFIG`, `USAGE`, …).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The process exit code.
    pub exit: u8,
    /// Reported on stderr even in JSON mode (stdout is where it must not go: the audit log).
    pub stderr_only: bool,
}

impl Failure {
    /// A failure that exits 1.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            exit: exit::FAILURE,
            stderr_only: false,
        }
    }

    /// A usage error (exit 64).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: exit::USAGE,
            ..Self::new(code::USAGE, message)
        }
    }

    /// The coded failure inside an error, or `IO_ERROR` for a file or stream error, or `FAILED`.
    pub fn of(e: &anyhow::Error) -> Self {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return f.clone();
        }
        let code = if e.chain().any(|c| c.is::<std::io::Error>()) {
            code::IO_ERROR
        } else {
            "FAILED"
        };
        Self::new(code, format!("{e:#}"))
    }
}

/// Whether reports are JSON: asked for with `--json`, or stdout is not a terminal (a pipe, a file).
pub fn json_mode(flag: bool) -> bool {
    flag || !std::io::stdout().is_terminal()
}

/// Reports a failure: one JSON object `{"code","message"}` on stdout in JSON mode (and the words on stderr
/// when that is a terminal), words on stderr otherwise. Returns its exit code.
pub fn report(f: &Failure, json: bool) -> ExitCode {
    let words = || eprintln!("error: {} ({})", f.message, f.code);
    if !json {
        words();
        return ExitCode::from(f.exit);
    }
    let object = json!({ "success": false, "code": f.code, "message": f.message });
    if f.stderr_only {
        eprintln!("{object}");
    } else {
        // A closed stdout leaves only the exit code to say it.
        let _ = super::write_line(&object.to_string());
        if std::io::stderr().is_terminal() {
            words();
        }
    }
    ExitCode::from(f.exit)
}

/// A clap error as a usage failure (or help and version text asked for, which are not failures: printed,
/// exit 0). In JSON mode the failure is one JSON object on stdout and clap's text (the usage, a hint, or
/// the help of a command given without its subcommand) goes to stderr.
pub fn from_clap(e: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::from(exit::OK);
    }
    if !json {
        let _ = e.print();
        return ExitCode::from(exit::USAGE);
    }
    let text = e.render().to_string();
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a subcommand is required (see --help)".to_owned()
    } else {
        // The first line of clap's text is the error.
        text.lines()
            .next()
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_owned()
    };
    let object = json!({ "success": false, "code": code::USAGE, "message": message });
    let _ = super::write_line(&object.to_string());
    eprint!("{text}");
    ExitCode::from(exit::USAGE)
}
