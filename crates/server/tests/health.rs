//! The health figures of the API that depend on where the repository is: a local folder's
//! size and disk figures are measured by walking it (covered by the compatibility tests); a
//! bucket's size comes from its storage's listing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;

/// A repository in a bucket: the health page's size comes from the storage's listing
/// (`RepoAccess::stored_bytes`), with no disk figures; without that answer it is unknown.
#[tokio::test]
async fn an_s3_repository_reports_its_stored_bytes() {
    struct Sized;
    #[async_trait::async_trait]
    impl strongroom_server::RepoAccess for Sized {
        async fn snapshot(
            &self,
            _id: &str,
        ) -> Result<strongroom_server::SnapshotInfo, strongroom_server::RepoAccessError> {
            Err(strongroom_server::RepoAccessError::NotFound)
        }
        async fn export(
            &self,
            _id: &str,
            _out: Box<dyn std::io::Write + Send>,
        ) -> Result<u64, strongroom_server::RepoAccessError> {
            Err(strongroom_server::RepoAccessError::NotFound)
        }
        async fn stored_bytes(&self) -> Result<u64, strongroom_server::RepoAccessError> {
            Ok(123_456_789)
        }
    }
    let app = app_with(Setup {
        repository_url: Some("s3://clinic-backups/strongroom".into()),
        repo: Some(std::sync::Arc::new(Sized)),
        ..Setup::default()
    })
    .await;
    let r = app
        .send(Req::get("/api/v1/health/system").bearer(&app.admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let repo = &r.json()["repository"];
    assert_eq!(repo["location"], "s3://clinic-backups/strongroom", "{repo}");
    assert_eq!(repo["size_bytes"], 123_456_789, "{repo}");
    assert!(repo["disk_total_bytes"].is_null(), "{repo}");
    // The fake repository of the other tests cannot list: the size is unknown, not zero.
    let plain = app_with(Setup {
        repository_url: Some("s3://clinic-backups/strongroom".into()),
        repo: Some(std::sync::Arc::new(FakeRepo::default())),
        ..Setup::default()
    })
    .await;
    let r = plain
        .send(Req::get("/api/v1/health/system").bearer(&plain.admin))
        .await;
    assert!(
        r.json()["repository"]["size_bytes"].is_null(),
        "{}",
        r.text()
    );
}
