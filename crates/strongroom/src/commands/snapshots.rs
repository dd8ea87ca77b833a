//! `snapshots` and `stats`.

use std::io::Write as _;

use anyhow::Result;
use serde::Serialize;
use strongroom_repo::Id;

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
    let repo = super::open_without_index(g).await?;
    let (snaps, warnings) = repo.list_snapshots().await?;
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
            let t = s.timestamp().format("%Y-%m-%d %H:%M:%S").to_string();
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
