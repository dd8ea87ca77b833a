//! Where passwords come from: a file, an environment variable, or a prompt on a terminal.
//! Passwords are never printed or logged.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

fn from_file(path: &Path) -> Result<Vec<u8>> {
    let s =
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    let trimmed = s.strip_suffix(b"\n").unwrap_or(&s);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    if trimmed.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(trimmed.to_vec())
}

/// The repository password: `--password-file`, `STRONGROOM_PASSWORD`, or a prompt (twice when
/// `confirm`).
pub fn repository(file: Option<&Path>, confirm: bool) -> Result<Vec<u8>> {
    obtain(file, "STRONGROOM_PASSWORD", "repository password", confirm)
}

/// A new password for `key add` / `key passwd`.
pub fn new_password(file: Option<&Path>) -> Result<Vec<u8>> {
    obtain(file, "STRONGROOM_NEW_PASSWORD", "new password", true)
}

fn obtain(file: Option<&Path>, env: &str, what: &str, confirm: bool) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(p) = std::env::var(env) {
        if p.is_empty() {
            bail!("{env} is set but empty");
        }
        return Ok(p.into_bytes());
    }
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        bail!("no {what}: set {env}, give a password file, or run on a terminal to be asked");
    }
    let p =
        rpassword::prompt_password(format!("Enter {what}: ")).context("reading the password")?;
    if p.is_empty() {
        bail!("an empty password is not allowed");
    }
    if confirm {
        let again = rpassword::prompt_password(format!("Enter {what} again: "))
            .context("reading the password")?;
        if again != p {
            bail!("the passwords do not match");
        }
    }
    Ok(p.into_bytes())
}
