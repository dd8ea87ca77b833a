//! `snapshots` and `stats`.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::Serialize;
use strongroom_repo::Id;
use strongroom_storage::Kind;

use crate::cli::{Global, SnapshotsArgs};
use crate::output::size;

#[derive(Serialize)]
struct Row<'a> {
    id: Id,
    short_id: String,
    time: &'a str,
    kind: strongroom_repo::SnapshotKind,
    source: &'a str,
    paths: &'a [String],
    host: &'a str,
    tags: &'a [String],
    size: u64,
    parent: Option<Id>,
    summary: &'a strongroom_repo::snapshot::Summary,
}

pub async fn list(g: &Global, a: SnapshotsArgs) -> Result<i32> {
    let storage = super::storage(g)?;
    // The snapshot files are listed while the key is derived (most of opening's time).
    let lister = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move { storage.list_names(Kind::Snapshot).await })
    };
    let repo = super::open_storage_without_index(g, storage).await?;
    let names = lister
        .await
        .context("listing snapshots")?
        .context("listing snapshots")?;
    let (snaps, warnings) = repo.list_snapshots_among(names).await?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let snaps: Vec<_> = snaps
        .into_iter()
        .filter(|(_, s)| a.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
        .collect();
    if g.json {
        let rows: Vec<Row<'_>> = snaps
            .iter()
            .map(|(id, s)| Row {
                id: *id,
                short_id: id.short(),
                time: &s.time,
                kind: s.kind,
                source: &s.source,
                paths: &s.paths,
                host: &s.host,
                tags: &s.tags,
                size: s.size(),
                parent: s.parent,
                summary: &s.summary,
            })
            .collect();
        super::print_json(&rows)?;
    } else {
        // One write per 64 KiB rather than per line (10,000 snapshots are 10,000 lines).
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        writeln!(
            out,
            "{:<10} {:<20} {:<7} {:>11}  {:<16} source",
            "id", "time (UTC)", "kind", "size", "host"
        )?;
        for (id, s) in &snaps {
            let t = shown_time(&s.time);
            let kind = match s.kind {
                strongroom_repo::SnapshotKind::Files => "files",
                strongroom_repo::SnapshotKind::Stream => "stream",
            };
            let tags = if s.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.tags.join(","))
            };
            writeln!(
                out,
                "{:<10} {:<20} {:<7} {:>11}  {:<16} {}{}",
                id.short(),
                t,
                kind,
                size(s.size()),
                s.host,
                s.source,
                tags
            )?;
        }
        writeln!(out, "{} snapshot(s)", snaps.len())?;
        out.flush()?;
    }
    Ok(if warnings.is_empty() { 0 } else { 1 })
}

/// A snapshot's time as listed: `2026-12-05 18:53:00` (UTC). Times written by Strongroom are
/// RFC 3339 in UTC (`…Z`) and are cut, not parsed (10,000 lines); any other is parsed.
fn shown_time(time: &str) -> String {
    let b = time.as_bytes();
    let utc = b.len() >= 20
        && b.get(10) == Some(&b'T')
        && time.ends_with('Z')
        && b.iter().take(19).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => true,
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    match (utc, time.get(..10), time.get(11..19)) {
        (true, Some(date), Some(clock)) => format!("{date} {clock}"),
        _ => chrono::DateTime::parse_from_rfc3339(time)
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| time.to_owned()),
    }
}

pub async fn stats(g: &Global) -> Result<i32> {
    let repo = super::open(g).await?;
    let s = strongroom_repo::stats::stats(&repo).await?;
    if g.json {
        super::print_json(&s)?;
    } else {
        println!("snapshots:          {}", s.snapshots);
        println!("logical size:       {}", size(s.logical_bytes));
        println!(
            "unique data:        {} in {} blobs",
            size(s.unique_bytes),
            s.blobs
        );
        println!(
            "stored (packs):     {} in {} packs",
            size(s.pack_bytes),
            s.packs
        );
        println!("repository total:   {}", size(s.total_bytes));
        println!("deduplication:      {:.2}x", s.dedup_ratio);
        println!("compression:        {:.2}x", s.compression_ratio);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::shown_time;

    #[test]
    fn times_are_shown_in_utc_to_the_second() {
        assert_eq!(
            shown_time("2026-12-05T18:53:00.123456Z"),
            "2026-12-05 18:53:00"
        );
        assert_eq!(shown_time("2026-12-05T18:53:00Z"), "2026-12-05 18:53:00");
        // Another offset is converted, not cut.
        assert_eq!(
            shown_time("2026-12-05T20:53:00+02:00"),
            "2026-12-05 18:53:00"
        );
        assert_eq!(shown_time("yesterday"), "yesterday");
    }
}
