//! `verify`, including the rotating `--read-data-subset`.

use anyhow::{Context, Result, bail};
use strongroom_repo::checker::{self, ReadData};

use crate::cli::{Global, VerifyArgs};
use crate::output::size;

/// Parses "10%" (rotating) or "2/5" (fixed slice); returns (slice or None for rotating, slices).
fn parse_subset(s: &str) -> Result<(Option<u32>, u32)> {
    if let Some(p) = s.strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .with_context(|| format!("--read-data-subset {s:?}: expected a percentage like 10%"))?;
        if !(pct > 0.0 && pct <= 100.0) {
            bail!("--read-data-subset {s:?}: the percentage must be above 0 and at most 100");
        }
        let slices = (100.0 / pct).ceil() as u32;
        return Ok((None, slices.max(1)));
    }
    if let Some((n, m)) = s.split_once('/') {
        let n: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("--read-data-subset {s:?}: expected N/M"))?;
        let m: u32 = m
            .trim()
            .parse()
            .with_context(|| format!("--read-data-subset {s:?}: expected N/M"))?;
        if m == 0 || n == 0 || n > m {
            bail!("--read-data-subset {s:?}: need 1 <= N <= M");
        }
        return Ok((Some(n - 1), m));
    }
    bail!("--read-data-subset {s:?}: expected a percentage (10%) or a slice (2/5)")
}

pub async fn verify(g: &Global, a: VerifyArgs) -> Result<i32> {
    let repo = super::open(g).await?;
    // A shared lock: a prune cannot remove data while it is read.
    let guard = super::read_lock(&repo, "verify").await?;
    let result = verify_locked(g, a, &repo).await;
    if let Some(guard) = guard
        && let Err(e) = guard.release().await
    {
        eprintln!("warning: {e}");
    }
    result
}

async fn verify_locked(
    g: &Global,
    a: VerifyArgs,
    repo: &std::sync::Arc<strongroom_repo::Repository>,
) -> Result<i32> {
    if let Some(id) = &a.id {
        return super::database::verify_one(g, repo, id, a.test_restore, a.scratch_url.as_deref())
            .await;
    }
    let mut cursor_file = None;
    let read = if a.read_data {
        ReadData::All
    } else if let Some(s) = &a.read_data_subset {
        let (slice, of) = parse_subset(s)?;
        let n = match slice {
            Some(n) => n,
            None => {
                let f = super::cache_root(g)?
                    .join(repo.config().id.to_hex())
                    .join(format!("verify-cursor-{of}"));
                let n = std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .unwrap_or(0)
                    % of;
                cursor_file = Some((f, (n + 1) % of));
                n
            }
        };
        ReadData::Subset { n, of }
    } else {
        ReadData::None
    };
    let report = checker::check(repo, read).await?;
    if let Some((f, next)) = cursor_file
        && report.is_ok()
    {
        if let Some(dir) = f.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&f, next.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    if g.json {
        super::print_json(&serde_json::json!({
            "ok": report.is_ok(), "errors": report.errors, "warnings": report.warnings,
            "snapshots": report.snapshots, "trees": report.trees, "packs_read": report.packs_read,
            "bytes_read": report.bytes_read, "blobs_read": report.blobs_read,
            "read_data": match read { ReadData::None => "none".to_owned(), ReadData::All => "all".to_owned(), ReadData::Subset { n, of } => format!("{}/{of}", n + 1) },
        }))?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !g.quiet {
            let data = match read {
                ReadData::None => "structure only".to_owned(),
                ReadData::All => format!(
                    "all data read: {} packs, {}",
                    report.packs_read,
                    size(report.bytes_read)
                ),
                ReadData::Subset { n, of } => {
                    format!(
                        "data slice {}/{of} read: {} packs, {}",
                        n + 1,
                        report.packs_read,
                        size(report.bytes_read)
                    )
                }
            };
            println!(
                "{} snapshots, {} trees checked; {data}",
                report.snapshots, report.trees
            );
        }
    }
    if report.is_ok() {
        if !g.quiet && !g.json {
            println!("no errors were found");
        }
        Ok(0)
    } else if g.json {
        // The report is on stdout already: keep stdout a single JSON document.
        eprintln!(
            "error: verify found {} error(s); the repository is damaged (see the report)",
            report.errors.len()
        );
        Ok(1)
    } else {
        bail!(
            "verify found {} error(s); the repository is damaged (see above)",
            report.errors.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::parse_subset;

    #[test]
    fn subsets() {
        assert_eq!(parse_subset("10%").unwrap(), (None, 10));
        assert_eq!(parse_subset("33%").unwrap(), (None, 4));
        assert_eq!(parse_subset("2/5").unwrap(), (Some(1), 5));
        assert!(parse_subset("0%").is_err());
        assert!(parse_subset("6/5").is_err());
        assert!(parse_subset("x").is_err());
    }
}
