//! `serve --config FILE`: a TOML file of settings, under the same names as the environment variables, and
//! `serve --check-config`, which prints the effective settings with their sources and secrets redacted.
//!
//! Precedence is flags > environment > file: before the command line is parsed, each entry of the file
//! becomes the environment variable it names, unless the environment already sets it. A flag then wins
//! over both, as it wins over the environment everywhere else.
//!
//! ```toml
//! CXONE_PROFILE = "cxone"
//! CXONE_ACCESS_KEY_ID = "…"
//! CXONE_AUDIT_LOG = "/var/lib/cxone-agent-state/audit.jsonl"
//! CXONE_SERVE_LISTEN = "0.0.0.0:8443"
//! CXONE_API_KEYS_FILE = "/etc/cxone-agent-state/api-keys"
//! CXONE_SERVE_TLS_CERT = "/etc/cxone-agent-state/tls/cert.pem"
//! CXONE_SERVE_TLS_KEY = "/etc/cxone-agent-state/tls/key.pem"
//! CXONE_RATE_LIMIT_PER_MIN = 100
//! ```
//!
//! Names may be written in lower case too (`cxone_profile`). An unknown name is an error, so a typo is not
//! silently ignored.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::cli::fail::Failure;

/// The variables the configuration file set (for `--check-config`'s sources).
static FROM_FILE: OnceLock<BTreeSet<String>> = OnceLock::new();

/// Variables a setting's value must never be shown for.
pub fn is_secret(variable: &str) -> bool {
    variable.contains("SECRET") || variable.contains("PASSWORD") || variable.ends_with("_TOKEN")
}

/// Where `serve` was asked to read a configuration file from: `--config FILE`, `--config=FILE`, or
/// `CXONE_CONFIG`. `None` unless the command is `serve`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return None;
    }
    let mut args = argv.iter().skip(2);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("CXONE_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads `serve`'s configuration file, if one is named, into the environment (see the module's
/// documentation). `known` are the variable names a file may set. Called by `main` before anything else
/// runs (no other thread exists yet).
pub fn apply_file(argv: &[OsString], known: &BTreeSet<String>) -> Result<(), Failure> {
    let Some(path) = config_path(argv) else {
        return Ok(());
    };
    let invalid = |what: String| Failure {
        exit: crate::cli::fail::exit::USAGE,
        ..Failure::new("INVALID_CONFIG", format!("{}: {what}", path.display()))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(format!("cannot read: {e}")))?;
    let entries = parse(&text, known).map_err(invalid)?;
    warn_if_readable_by_others(&path, &entries);
    let mut set = BTreeSet::new();
    for (name, value) in entries {
        if std::env::var_os(&name).is_none() {
            // Single-threaded here: `main` calls this before any thread starts.
            std::env::set_var(&name, value);
            set.insert(name);
        }
    }
    let _ = FROM_FILE.set(set);
    Ok(())
}

/// The file's entries as `(VARIABLE, value)`.
pub fn parse(text: &str, known: &BTreeSet<String>) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("not TOML: {}", e.message()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase().replace('-', "_");
        if !known.contains(&name) {
            return Err(format!(
                "unknown setting {key:?} (settings are named as their environment variables, e.g. \
                 CXONE_AUDIT_LOG; see `serve --help`)"
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    other => Err(format!("{key}: a list holds strings only, not {other}")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => {
                return Err(format!(
                    "{key}: a value is a string, a number, a boolean or a list"
                ))
            }
        };
        out.push((name, text));
    }
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("{} is set twice (names ignore case)", w[0].0));
    }
    Ok(out)
}

/// A file holding a secret should be readable by its owner only.
fn warn_if_readable_by_others(path: &Path, entries: &[(String, String)]) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let holds_secret = entries.iter().any(|(name, _)| is_secret(name));
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if holds_secret && mode & 0o077 != 0 {
            eprintln!(
                "warning: {} holds a secret and others can read it (chmod 600)",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, entries);
}

/// Where a setting's value came from.
pub fn source_of(matches: &ArgMatches, id: &str, variable: Option<&str>) -> &'static str {
    let from_file = |v: &str| FROM_FILE.get().is_some_and(|set| set.contains(v));
    match matches.try_get_raw(id).ok().and(matches.value_source(id)) {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => match variable {
            Some(v) if from_file(v) => "file",
            _ => "environment",
        },
        Some(ValueSource::DefaultValue) => "default",
        _ => match variable {
            Some(v) if std::env::var_os(v).is_some_and(|x| !x.is_empty()) => {
                if from_file(v) {
                    "file"
                } else {
                    "environment"
                }
            }
            _ => "unset",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        [
            "CXONE_AUDIT_LOG",
            "CXONE_RATE_LIMIT_PER_MIN",
            "CXONE_BREAK_ACTIVITIES",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    #[test]
    fn entries_become_variables_in_either_case_with_lists_joined() {
        let entries = parse(
            "cxone_audit_log = \"/var/log/a.jsonl\"\nCXONE_RATE_LIMIT_PER_MIN = 600\n\
             CXONE_BREAK_ACTIVITIES = [\"Break\", \"Lunch\"]\n",
            &known(),
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                ("CXONE_AUDIT_LOG".to_owned(), "/var/log/a.jsonl".to_owned()),
                (
                    "CXONE_BREAK_ACTIVITIES".to_owned(),
                    "Break,Lunch".to_owned()
                ),
                ("CXONE_RATE_LIMIT_PER_MIN".to_owned(), "600".to_owned()),
            ]
        );
    }

    #[test]
    fn an_unknown_name_or_a_table_or_bad_toml_is_refused_by_name() {
        let e = parse("CXONE_AUDIT_LGO = \"x\"\n", &known()).unwrap_err();
        assert!(e.contains("CXONE_AUDIT_LGO"), "{e}");
        let e = parse("[CXONE_AUDIT_LOG]\nx = 1\n", &known()).unwrap_err();
        assert!(e.contains("CXONE_AUDIT_LOG"), "{e}");
        let e = parse("CXONE_AUDIT_LOG = \n", &known()).unwrap_err();
        assert!(e.starts_with("not TOML"), "{e}");
    }

    #[test]
    fn only_serve_reads_a_configuration_file() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&argv(&[
                "x", "serve", "--listen", "a", "--config", "f.toml"
            ])),
            Some(PathBuf::from("f.toml"))
        );
        assert_eq!(
            config_path(&argv(&["x", "serve", "--config=g.toml"])),
            Some(PathBuf::from("g.toml"))
        );
        assert_eq!(
            config_path(&argv(&["x", "transition", "--config", "f.toml"])),
            None
        );
    }
}
