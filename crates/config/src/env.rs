//! Environment lookup behind a small trait, so tests (and the CLI, which layers its flags on
//! top) can supply variables without touching the process environment.
//!
//! What it must not do: read anything but the variable asked for, or treat an empty value as
//! a setting (platforms often define variables as empty; empty means unset).

use std::collections::{BTreeMap, HashMap};

/// A source of environment variables.
pub trait Env {
    /// The value of `name`, or `None` when it is unset, empty, or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
            .filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var(&self, name: &str) -> Option<String> {
        (**self).var(name)
    }
}
