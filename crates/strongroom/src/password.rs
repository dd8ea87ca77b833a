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

/// Reads a master key file (`--master-key-file`), warning when other users may read it.
pub fn master_key_credential(path: &Path) -> Result<strongroom_repo::Credential> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading master key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: master key file {} can be read by other users (mode {:o}); \
                 `chmod 600` it: it opens every backup",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    let file = strongroom_repo::MasterKeyFile::parse(&bytes)
        .with_context(|| format!("master key file {}", path.display()))?;
    Ok(strongroom_repo::Credential::MasterKey(Box::new(file)))
}

/// Creates `path` (never overwriting) with mode 0600 and writes a master key file into it,
/// flushed to disk before returning.
pub fn write_master_key_file(path: &Path, file: &strongroom_repo::MasterKeyFile) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing file is never overwritten)",
            path.display()
        )
    })?;
    let written = out
        .write_all(&file.to_bytes())
        .and_then(|()| out.sync_all());
    if let Err(e) = written {
        // A half-written key file would only confuse: remove it.
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
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
