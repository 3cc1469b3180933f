//! Building the program from a test or a bench without forcing a rebuild.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cxone-agent-state` binary beside the running test or bench (`target/<profile>/`), built now by
/// Cargo (a no-op when it is fresh); `--release` when the bench runs in the release profile.
pub fn build_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "-q",
        "-p",
        "cxone-agent-state-cli",
        "--bin",
        "cxone-agent-state",
    ]);
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    without_package_variables(&mut build);
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the binary failed");
    let bin = dir.join("cxone-agent-state");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Removes the variables Cargo sets for the running test or bench from `build` (a `cargo build`): passed
/// on, they change build-script inputs (ring's among them) and force a rebuild of the TLS stack every run.
fn without_package_variables(build: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let per_package = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        if per_package || key == "CARGO_TARGET_TMPDIR" || key == "OUT_DIR" {
            build.env_remove(&key);
        }
    }
}
