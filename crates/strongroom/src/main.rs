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

/// Large buffers (chunks, packs) are allocated and freed all the time. glibc's dynamic mmap
/// threshold would move them into its arenas after the first free, where freed memory stays
/// resident: peak memory of a backup doubled. A fixed threshold keeps them in mmap'd
/// regions returned to the system when freed.
///
/// glibc also gives threads their own arenas, and what a thread frees stays in the arena it
/// came from; buffers made on one thread and freed on another (sealed blobs, decoded ones)
/// left each arena holding some: about 10 MB more at the peak of a backup (85.5 against 75
/// MB with two arenas, measured on the benchmark's media tree). Two arenas serve two cores'
/// worth of workers; `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    let arenas_set = std::env::var_os("MALLOC_ARENA_MAX").is_some();
    // SAFETY: mallopt only changes allocator parameters; it is called once, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        if !arenas_set {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() {
    tune_allocator();
    let cli = cli::Cli::parse();
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
