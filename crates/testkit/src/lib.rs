//! Helpers shared by the test suites of several crates: a folder of fake and real tools to
//! put on a source's search path, and a fault-injecting proxy in front of an S3 server
//! ([`s3_proxy`]). For tests only: it panics on any failure, and no crate may
//! depend on it outside `[dev-dependencies]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod s3_proxy;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The real tools a fake script may call as `@REAL_<tool>@`.
const REAL_TOOLS: [&str; 6] = [
    "pg_dump",
    "pg_dumpall",
    "psql",
    "mariadb-dump",
    "mariadb",
    "head",
];

/// The first `name` on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A folder holding only the given tools: symlinks to the real `links` and, for each
/// `(name, body)` of `scripts`, a `#!/bin/sh` script in whose body `@REAL_<tool>@` is replaced
/// by the real tool's path.
pub fn tool_dir(links: &[&str], scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in links {
        let real = which(name).unwrap_or_else(|| panic!("{name} is not installed"));
        std::os::unix::fs::symlink(real, dir.path().join(name)).unwrap();
    }
    for (name, body) in scripts {
        let mut body = (*body).to_owned();
        for tool in REAL_TOOLS {
            let key = format!("@REAL_{tool}@");
            if body.contains(&key) {
                let real = which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
                body = body.replace(&key, &real.display().to_string());
            }
        }
        write_script(&dir.path().join(name), &body);
    }
    dir
}

/// Writes an executable `#!/bin/sh` script without this process ever holding it open for
/// writing. While any process has a file open for writing, exec of it fails with ETXTBSY
/// ("Text file busy"), and a child that another test thread forks at that moment inherits the
/// descriptor until it execs; so a `sh` child writes the file instead.
pub fn write_script(path: &Path, body: &str) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("cat > \"$0\" && chmod 755 \"$0\"")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
        .unwrap();
    drop(stdin);
    assert!(
        child.wait().unwrap().success(),
        "writing {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_and_real_tools_are_substituted() {
        let dir = tool_dir(&[], &[("fake", "echo \"@REAL_head@\"; exit 3")]);
        let out = Command::new(dir.path().join("fake")).output().unwrap();
        assert_eq!(out.status.code(), Some(3));
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.trim(), which("head").unwrap().display().to_string());
    }
}
