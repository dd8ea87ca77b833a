//! Benchmark fixture: writes N copies of one snapshot into a repository, a minute apart, so
//! that `bench/` can time listing snapshots and restoring from a repository of 10,000 of
//! them (issue 6, point 4) without running 10,000 backups. Not part of Strongroom.
//!
//! ```sh
//! STRONGROOM_PASSWORD=... cargo run --release -p strongroom-repo --example repeat_snapshot -- REPO SNAPSHOT N
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use strongroom_repo::Repository;
use strongroom_storage::local::LocalStorage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, snapshot, n] = args.as_slice() else {
        return Err(
            "usage: repeat_snapshot REPO SNAPSHOT N (password in STRONGROOM_PASSWORD)".into(),
        );
    };
    let n: usize = n.parse()?;
    let password = std::env::var("STRONGROOM_PASSWORD")
        .map_err(|_| "set STRONGROOM_PASSWORD to the repository's password")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let storage = Arc::new(LocalStorage::new(PathBuf::from(repo)));
        let repo = Repository::open(storage, password.as_bytes()).await?;
        let (_, snap) = repo.find_snapshot(snapshot).await?;
        let start = snap.timestamp() - chrono::Duration::minutes(i64::try_from(n)?);
        let repo = &repo;
        let writes = futures::stream::iter(0..n)
            .map(|i| {
                let mut s = snap.clone();
                let at = start + chrono::Duration::minutes(i64::try_from(i).unwrap_or(0));
                s.time = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                async move { repo.save_snapshot(&s).await }
            })
            .buffer_unordered(16);
        let written: Vec<_> = writes.collect().await;
        for w in written {
            w?;
        }
        println!("wrote {n} copies of snapshot {snapshot}");
        Ok(())
    })
}
