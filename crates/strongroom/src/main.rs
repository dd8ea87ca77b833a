//! The `strongroom` binary: the command-line tool and the service (`strongroom serve`).
//!
//! This is the edge where typed library errors become `anyhow` errors with context, and
//! errors become an exit code: 0 success, 1 failure, 3 a backup that was saved but skipped
//! some files. It must not hold engine logic: commands call the library crates.

mod cli;
mod commands;
mod output;
mod password;

use clap::Parser;

/// Exit code of a backup that committed a snapshot but could not read some files.
pub const EXIT_PARTIAL: i32 = 3;

/// How the allocator should treat large buffers for one command (see [`tune_allocator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllocatorProfile {
    /// Large buffers returned to the system when freed: the lowest peak memory.
    Compact,
    /// Buffers up to [`REUSE_MMAP_THRESHOLD`] reused from the heap: fewer page faults.
    Reuse,
}

/// Largest buffer a [`AllocatorProfile::Reuse`] command takes from the heap: a decoded run
/// of blobs or a media chunk (up to 8 MiB), not a whole pack.
const REUSE_MMAP_THRESHOLD: i32 = 16 << 20;
/// Free memory a [`AllocatorProfile::Reuse`] command keeps at the top of its heap.
const REUSE_TRIM_THRESHOLD: i32 = 4 << 20;

impl AllocatorProfile {
    /// Restore and export decode a run of blobs (1–2 MiB) into a fresh buffer, write it out
    /// and free it, thousands of times: with each buffer a new mapping, faulting in and
    /// zeroing its pages and unmapping them again (TLB shoot-downs on every core) cost a
    /// third of a tree restore's system time. Reused from the heap, the restore of the
    /// benchmark's media tree took 1.44–1.81 s → 1.10–1.58 s (sys 1.2–1.6 → 0.6–1.0 s) for
    /// 34 → 39 MB of peak memory (docs/benchmarks.md, seventh pass). Backups keep the
    /// compact profile: their memory is what the peers are closest on, and verify gained
    /// nothing from it without holding whole packs (84–97 MB).
    fn of(command: &cli::Command) -> AllocatorProfile {
        match command {
            cli::Command::Restore(_) | cli::Command::Export(_) => AllocatorProfile::Reuse,
            _ => AllocatorProfile::Compact,
        }
    }
}

/// Large buffers (chunks, packs) are allocated and freed all the time. glibc's dynamic mmap
/// threshold would move them into its arenas after the first free, where freed memory stays
/// resident: peak memory of a backup doubled. A fixed threshold keeps them in mmap'd
/// regions returned to the system when freed ([`AllocatorProfile::Compact`]); commands
/// that only decode and write keep them (up to a limit) for reuse instead
/// ([`AllocatorProfile::Reuse`]).
///
/// glibc also gives threads their own arenas, and what a thread frees stays in the arena it
/// came from; buffers made on one thread and freed on another (sealed blobs, decoded ones)
/// left each arena holding some: about 10 MB more at the peak of a backup (85.5 against 75
/// MB with two arenas, measured on the benchmark's media tree). Two arenas serve two cores'
/// worth of workers; `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator(profile: AllocatorProfile) {
    let arenas_set = std::env::var_os("MALLOC_ARENA_MAX").is_some();
    // SAFETY: mallopt only changes allocator parameters; it is called once, before any
    // other thread exists.
    unsafe {
        match profile {
            AllocatorProfile::Compact => {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            }
            AllocatorProfile::Reuse => {
                libc::mallopt(libc::M_MMAP_THRESHOLD, REUSE_MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD);
            }
        }
        if !arenas_set {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator(_profile: AllocatorProfile) {}

fn main() {
    // Parsing starts no thread: the allocator is still tuned before any other exists.
    let cli = cli::Cli::parse();
    tune_allocator(AllocatorProfile::of(&cli.command));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let json = cli.global.json;
    let code = match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let msg = error_text(&e);
            if json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("error: {msg}");
            1
        }
    };
    drop(rt);
    std::process::exit(code);
}

/// The error and its causes, each said once: library errors already include their source in
/// their message, so `{:#}` would repeat it.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}
