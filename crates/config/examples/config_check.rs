//! `cargo run -p strongroom-config --example config_check -- FILE`: load a configuration with
//! the process environment and print it redacted, or its problems (what `strongroom config
//! check` will do). Must not print a secret.

use std::path::PathBuf;

use strongroom_config::{Config, ProcessEnv};

fn main() {
    let path = std::env::args_os().nth(1).map(PathBuf::from);
    match Config::load(path.as_deref(), &ProcessEnv) {
        Ok(config) => print!("{config}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
