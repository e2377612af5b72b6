//! Clients written by others, in Python: a virtualenv per client under the
//! target directory, made on first use from the client's requirements file
//! and remade when that file changes. No python3 fails the test (CI has
//! one): such a client is part of what is checked, never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The Python of a virtualenv holding `tests/<dir>/requirements.txt`, named
/// `<dir>-venv` in the target's test directory; `what` says in a failure
/// what needs it.
pub fn venv(dir: &str, what: &str) -> PathBuf {
    // Tests of one crate may ask at once: one makes the virtualenv.
    static MAKING: Mutex<()> = Mutex::new(());
    let _making = MAKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "no python3 on PATH for {what}: install python3 (with venv and pip)"
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let requirements = std::fs::read_to_string(here.join("requirements.txt")).unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{dir}-venv"));
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| panic!("python3 -m venv for {what}: {e}"));
    assert!(made.success(), "python3 -m venv {}", venv.display());
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-input", "-r"])
        .arg(here.join("requirements.txt"))
        .status()
        .unwrap();
    assert!(
        installed.success(),
        "pip install -r tests/{dir}/requirements.txt failed ({what} needs it)"
    );
    std::fs::write(&stamp, &requirements).unwrap();
    python
}
