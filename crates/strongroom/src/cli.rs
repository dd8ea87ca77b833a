//! Command-line definitions (clap). Only argument shapes live here; the work is in
//! `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Strongroom: backups of a web application's databases and media, deduplicated,
/// compressed, encrypted and proven restorable.
#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The configuration file (service commands; default: STRONGROOM_CONFIG, else the
    /// environment alone).
    #[arg(long, global = true, env = "STRONGROOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository location: a local folder, file:///path, or s3://bucket/prefix (credentials,
    /// region and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL).
    #[arg(long, global = true, env = "STRONGROOM_REPO", value_name = "PATH")]
    pub repo: Option<String>,
    /// Read the repository password from this file (else STRONGROOM_PASSWORD, else a prompt).
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Open the repository with this master key file instead of a password (no key
    /// derivation; written by `strongroom key export-master`). It wins over every password
    /// setting.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_MASTER_KEY_FILE",
        value_name = "FILE"
    )]
    pub master_key_file: Option<PathBuf>,
    /// Folder of the local cache (decoded snapshots; default: $XDG_CACHE_HOME/strongroom,
    /// else ~/.cache/strongroom). It only saves reading; deleting it loses nothing.
    #[arg(long, global = true, env = "STRONGROOM_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use no local cache (read every snapshot file from the repository).
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (no progress).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The configuration once read (see `commands::service::load_config`).
    #[arg(skip)]
    pub loaded_config: std::sync::OnceLock<strongroom_config::Config>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up folders, or a stream from stdin.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot to a folder, or a stream snapshot to stdout.
    Restore(RestoreArgs),
    /// Check the repository; with --read-data, every byte.
    Verify(VerifyArgs),
    /// Remove snapshots by retention policy or by id.
    Forget(ForgetArgs),
    /// Remove data no snapshot needs.
    Prune(PruneArgs),
    /// Write a snapshot as plain files: a stream's bytes, or a tar of a folder snapshot.
    ///
    /// A PostgreSQL parallel backup (`--pg-jobs`) is a folder snapshot: its export is a tar
    /// that unpacks to a folder `NAME.pgdir`; restore it with `pg_restore -Fd NAME.pgdir`.
    Export(ExportArgs),
    /// Show repository sizes and the deduplication ratio.
    Stats,
    /// Manage passwords (key files).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove stale locks (left by processes that no longer run).
    Unlock(UnlockArgs),
    /// Import an existing dump file (e.g. from a managed provider) as a database snapshot.
    Import(ImportArgs),
    /// Probe the health of the configured databases.
    Health(DatabasesArgs),
    /// Run the service: the scheduler, job workers and the HTTP API.
    Serve(ServeArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create the default schedules for a platform app (from DATABASE_URL and MEDIA_ROOT).
    Setup(SetupArgs),
    /// Manage schedules (kept in the catalog; those of the configuration file are synced).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// List jobs (backups, verifications, …), or cancel one.
    Jobs(JobsArgs),
    /// Catalog maintenance.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Manage dashboard and API users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: [server] listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Jobs run at the same time (default: [jobs] workers).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Run the scheduler and workers only, without the HTTP API.
    #[arg(long)]
    pub no_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print it with every secret redacted.
    Check {
        /// The file (default: --config / STRONGROOM_CONFIG).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Where to write the configuration.
    #[arg(long, value_name = "FILE", default_value = "strongroom.toml")]
    pub write: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Print the configuration instead of writing it; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule.
    Add(ScheduleAddArgs),
    /// List schedules with their last and next runs.
    List,
    /// Enable a schedule (its next run is planned from now).
    Enable {
        /// The schedule.
        name: String,
    },
    /// Disable a schedule.
    Disable {
        /// The schedule.
        name: String,
    },
    /// Remove a schedule (its past jobs stay in the history).
    Remove {
        /// The schedule.
        name: String,
    },
    /// Run a schedule now: queue its job and, unless --detach, work until it ends.
    Run {
        /// The schedule.
        name: String,
        /// Only queue the job (a running `strongroom serve` picks it up).
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// Unique name.
    pub name: String,
    /// What it runs: full, database, media, verify or prune.
    #[arg(long = "type", value_name = "KIND")]
    pub kind: String,
    /// When: a cron expression ("0 2 * * *") or "hourly", "daily HH:MM",
    /// "weekly DAY HH:MM", "monthly D HH:MM".
    #[arg(long)]
    pub when: String,
    /// IANA time zone (default: the configuration's, else UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// A source name (repeatable; default: every source the kind applies to).
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Verify what each backup wrote.
    #[arg(long)]
    pub verify: bool,
    /// Prove database parts by a test restore.
    #[arg(long)]
    pub test_restore: bool,
    /// Verification schedules: the share of data to re-read on each run, e.g. 10%.
    #[arg(long, value_name = "N%")]
    pub read_data_subset: Option<String>,
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than N days.
    #[arg(long)]
    pub keep_days: Option<u32>,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Ask a queued or running job to stop.
    #[arg(long, value_name = "ID")]
    pub cancel: Option<i64>,
    /// Show one job in full.
    #[arg(long, value_name = "ID", conflicts_with = "cancel")]
    pub show: Option<i64>,
    /// Only jobs with this status (queued, in_progress, success, warning, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Rebuild the snapshot records of the catalog from the repository alone.
    Rebuild,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password from STRONGROOM_NEW_PASSWORD, --new-password-file or a prompt).
    Add {
        /// Login name.
        username: String,
        /// admin, staff or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        password: NewPasswordArgs,
    },
    /// List users.
    List,
    /// Remove a user with their sessions and tokens.
    Remove {
        /// Login name.
        username: String,
    },
}

/// Which databases and media folders: flags, else DATABASE_URL and MEDIA_ROOT.
#[derive(Debug, Args, Clone, Default)]
pub struct DatabasesArgs {
    /// A database: URL or NAME=URL (postgres://, mysql://, mariadb://, sqlite:///path);
    /// repeatable. Default: DATABASE_URL, named "default".
    #[arg(long = "database", value_name = "[NAME=]URL")]
    pub databases: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file is (only "database" for now).
    #[arg(long = "type", value_name = "TYPE", default_value = "database")]
    pub kind: String,
    /// Name to record the database under.
    #[arg(long, default_value = "imported")]
    pub name: String,
    /// The dump file: a pg_dump custom archive, a MySQL/MariaDB dump or a SQLite database.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Argon2id memory for the key, in MiB (at least 19).
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes (at least 2).
    #[arg(long, default_value_t = 3)]
    pub kdf_passes: u32,
    /// Target pack size in bytes (advanced).
    #[arg(long, hide = true)]
    pub pack_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A folder or file to back up (repeatable).
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as a stream named NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "paths")]
    pub stdin: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Compare against this snapshot instead of the latest of the same paths.
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// Read every file even when it looks unchanged.
    #[arg(long)]
    pub force: bool,
    /// Leave out what matches PATTERN under each --path or --media folder (repeatable):
    /// `*.tmp` (a name at any depth), `cache/**` (from the folder), `build/` (folders only);
    /// `*`, `?`, `[a-z]`, `**`, `\` as in the configuration's `exclude`.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Host name to record.
    #[arg(long)]
    pub host: Option<String>,
    /// Back up the configured sources: full (every database and media folder, one recovery
    /// point), database or media.
    #[arg(long = "type", value_name = "full|database|media", conflicts_with_all = ["paths", "stdin"])]
    pub backup_type: Option<String>,
    #[command(flatten)]
    pub dbs: DatabasesArgs,
    /// A media folder: DIR or NAME=DIR; repeatable. Default: MEDIA_ROOT, named "media".
    #[arg(long = "media", value_name = "[NAME=]DIR")]
    pub media: Vec<String>,
    /// Re-read and check everything written before calling the backup successful.
    #[arg(long)]
    pub verify: bool,
    /// Also prove each database part by restoring it into a scratch database.
    #[arg(long)]
    pub test_restore: bool,
    /// Server for scratch databases of test restores (default: the database's own).
    #[arg(long, value_name = "URL")]
    pub scratch_url: Vec<String>,
    /// PostgreSQL: dump with `pg_dump -Fd -j N` (N workers, 1-32) into a private temporary
    /// folder, stored as a folder snapshot, instead of streaming one archive (1). Default:
    /// each database's `parallel_jobs`, else 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub pg_jobs: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (a unique prefix) or "latest".
    pub id: String,
    /// Folder to restore into (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["stdout", "to_database"],
        conflicts_with = "stdout"
    )]
    pub target: Option<PathBuf>,
    /// Write a stream snapshot to standard output.
    #[arg(long)]
    pub stdout: bool,
    /// Restore only this path inside the snapshot (repeatable).
    #[arg(long = "include", value_name = "PATH")]
    pub include: Vec<String>,
    /// Leave holes where whole 4 KiB blocks of a file are zeros (sparse files: disk images
    /// and preallocated files take only the room of their data).
    #[arg(long, conflicts_with_all = ["stdout", "to_database"])]
    pub sparse: bool,
    /// Restore a database snapshot into this database (created if missing).
    #[arg(long, value_name = "URL", conflicts_with_all = ["target", "stdout"])]
    pub to_database: Option<String>,
    /// Replace an existing database (a safety backup of it is taken first).
    #[arg(long, requires = "to_database")]
    pub replace: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify one snapshot (every blob it uses), instead of the whole repository.
    pub id: Option<String>,
    /// Prove a database snapshot by restoring it into a scratch database and comparing
    /// every table's row count with its manifest.
    #[arg(long, requires = "id")]
    pub test_restore: bool,
    /// Server for the scratch database (default: DATABASE_URL's server).
    #[arg(long, value_name = "URL")]
    pub scratch_url: Option<String>,
    /// Read and check every byte of every pack.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a rotating part of the data: "10%" (each run the next tenth) or "2/5".
    #[arg(long, value_name = "N%|N/M")]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove by id (instead of, or besides, a policy).
    pub ids: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub keep_last: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep everything within this duration of the newest snapshot (e.g. 30d, 2w, 1y).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// Show what would be removed; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show the plan; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Snapshot id (a unique prefix) or "latest".
    pub id: String,
    /// Write to this file (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key files.
    List,
    /// Add a password (from STRONGROOM_NEW_PASSWORD, --new-password-file or a prompt).
    Add(NewPasswordArgs),
    /// Remove a key file by id prefix.
    Remove {
        /// Key id (prefix).
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPasswordArgs),
    /// Write the repository's master key to a new file (mode 0600), to open the repository
    /// with --master-key-file instead of a password: no key derivation, for unattended
    /// machines. Whoever reads the file can read and delete every backup, even after the
    /// passwords change; keep it like the password, and never inside the repository.
    ExportMaster {
        /// The file to create (an existing file is never overwritten).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// File holding the new password.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, even of running processes (dangerous).
    #[arg(long)]
    pub remove_all: bool,
}
