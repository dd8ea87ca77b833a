//! Embedded schema migrations, one list per backend, applied by [`crate::Catalog::connect`].
//!
//! Each migration is a SQL file under `migrations/<backend>/`, compiled into the binary. The
//! applied ones are recorded in `catalog_migrations` with a checksum of their text. Migrating
//! is idempotent and safe when several processes start at once: everything happens in one
//! transaction that first takes the database's write lock (SQLite `BEGIN IMMEDIATE`) or an
//! advisory lock (PostgreSQL). This module must never edit or skip an applied migration: a
//! changed file, or a database newer than this binary, is an error, not something to repair.

use chrono::Utc;
use sqlx::{Executor, Row};

use crate::db::{Db, db_err};
use crate::error::{CatalogError, Result};

/// One embedded migration.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/sqlite/0001_initial.sql"),
}];

pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/postgres/0001_initial.sql"),
}];

/// The advisory-lock key PostgreSQL migrations serialise on ("strongrm" in ASCII).
const PG_LOCK_KEY: i64 = 0x7374_726f_6e67_726d;

/// FNV-1a 64 of the migration text: detects an edited migration, not an attacker.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The migrations still to apply, after checking the applied ones against `all`.
fn pending<'a>(applied: &[(i64, String)], all: &'a [Migration]) -> Result<Vec<&'a Migration>> {
    let newest_known = all.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, sum) in applied {
        match all.iter().find(|m| m.version == *version) {
            None if *version > newest_known => {
                return Err(CatalogError::Database(format!(
                    "the catalog has schema version {version}, newer than this strongroom \
                     knows ({newest_known}); upgrade strongroom"
                )));
            }
            None => {
                return Err(CatalogError::Database(format!(
                    "the catalog records migration {version}, which this strongroom does not have"
                )));
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(CatalogError::Database(format!(
                    "migration {version} ({}) differs from the one applied to this catalog",
                    m.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(all
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

/// Applies every pending migration; returns the schema version.
///
/// Statements go through the `Executor` trait (`tx.execute(query)`), whose futures are boxed
/// and `Send`; sqlx's `Query::execute(&mut *tx)` form trips a compiler limitation
/// (higher-ranked lifetimes) that would make `Catalog::connect` unusable in `tokio::spawn`.
pub(crate) async fn run(db: &Db) -> Result<i64> {
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
            tx.execute(sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS catalog_migrations (version INTEGER PRIMARY KEY, \
                 name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT",
            ))
            .await
            .map_err(db_err)?;
            let rows = tx
                .fetch_all(sqlx::query(
                    "SELECT version, checksum FROM catalog_migrations",
                ))
                .await
                .map_err(db_err)?;
            let applied = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()
                .map_err(db_err)?;
            for m in pending(&applied, SQLITE)? {
                tx.execute(sqlx::raw_sql(m.sql))
                    .await
                    .map_err(|e| migration_failed(m, e))?;
                tx.execute(
                    sqlx::query("INSERT INTO catalog_migrations VALUES ($1, $2, $3, $4)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(checksum(m.sql))
                        .bind(Utc::now().to_rfc3339()),
                )
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(SQLITE.iter().map(|m| m.version).max().unwrap_or(0))
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            tx.execute(sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_LOCK_KEY))
                .await
                .map_err(db_err)?;
            tx.execute(sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS catalog_migrations (version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
            ))
            .await
            .map_err(db_err)?;
            let rows = tx
                .fetch_all(sqlx::query(
                    "SELECT version, checksum FROM catalog_migrations",
                ))
                .await
                .map_err(db_err)?;
            let applied = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()
                .map_err(db_err)?;
            for m in pending(&applied, POSTGRES)? {
                tx.execute(sqlx::raw_sql(m.sql))
                    .await
                    .map_err(|e| migration_failed(m, e))?;
                tx.execute(
                    sqlx::query("INSERT INTO catalog_migrations VALUES ($1, $2, $3, $4)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(checksum(m.sql))
                        .bind(Utc::now()),
                )
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(POSTGRES.iter().map(|m| m.version).max().unwrap_or(0))
        }
    }
}

fn migration_failed(m: &Migration, e: sqlx::Error) -> CatalogError {
    CatalogError::Database(format!(
        "migration {} ({}) failed: {}",
        m.version,
        m.name,
        db_err(e)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations() {
        let v = |ms: &[Migration]| ms.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(v(SQLITE), v(POSTGRES));
    }

    #[test]
    fn edited_or_unknown_migrations_are_refused() {
        let sum = checksum(SQLITE[0].sql);
        assert_eq!(
            pending(&[], SQLITE).map(|p| p.len()).ok(),
            Some(SQLITE.len())
        );
        assert!(pending(&[(1, sum)], SQLITE).is_ok_and(|p| p.is_empty()));
        assert!(pending(&[(1, "0".into())], SQLITE).is_err());
        assert!(pending(&[(99, "0".into())], SQLITE).is_err());
    }
}
