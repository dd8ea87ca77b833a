//! Login throttling: failed logins are counted per account and per client address; past a
//! number of free failures each further failure locks the key for an exponentially growing
//! time (capped). A success clears the account's count, never the address's (one valid
//! account must not reset an attacker's address).
//!
//! In memory and per process (a restart forgets); bounded in size. Must not be keyed on
//! anything the client chooses freely except the account name: the address comes from the
//! peer or from a trusted proxy only (see `client_ip`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How failures are throttled.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures an account may have before it is locked.
    pub account_free_failures: u32,
    /// Failures an address may have before it is locked.
    pub address_free_failures: u32,
    /// The first lock's length; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest lock.
    pub max_delay: Duration,
    /// A key with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// Keys kept at most (the oldest are dropped beyond).
    pub max_keys: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_free_failures: 5,
            address_free_failures: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    locked_until: Option<DateTime<Utc>>,
    last_failure: DateTime<Utc>,
}

/// The failure counters.
#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    map: Mutex<HashMap<String, Entry>>,
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Throttle {
    /// Empty counters.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The account key.
    pub fn account_key(username: &str) -> String {
        format!("account:{}", username.trim().to_lowercase())
    }

    /// The address key.
    pub fn address_key(ip: Option<std::net::IpAddr>) -> String {
        match ip {
            Some(ip) => format!("address:{ip}"),
            None => "address:unknown".to_owned(),
        }
    }

    /// Seconds to wait when any key is locked at `now`.
    pub fn locked(&self, keys: &[&str], now: DateTime<Utc>) -> Option<u64> {
        let map = self.map.lock().ok()?;
        keys.iter()
            .filter_map(|k| map.get(*k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| {
                let secs = (until - now).num_milliseconds().max(0);
                u64::try_from((secs + 999) / 1000).unwrap_or(1).max(1)
            })
            .max()
    }

    /// Records a failure of `key`, which has `free` failures before it locks.
    pub fn failure(&self, key: &str, free: u32, now: DateTime<Utc>) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.policy.max_keys {
            let forget = chrono_dur(self.policy.forget_after);
            map.retain(|_, e| now - e.last_failure < forget);
            if map.len() >= self.policy.max_keys
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let e = map.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        if now - e.last_failure >= chrono_dur(self.policy.forget_after) {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures > free {
            let exp = (e.failures - free - 1).min(30);
            let delay = self
                .policy
                .base_delay
                .saturating_mul(1u32 << exp)
                .min(self.policy.max_delay);
            e.locked_until = Some(now + chrono_dur(delay));
        }
    }

    /// Clears `key` (a successful login clears its account).
    pub fn success(&self, key: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_backs_off() {
        let t = Throttle::new(ThrottlePolicy::default());
        let now = Utc::now();
        for _ in 0..5 {
            t.failure("account:a", 5, now);
        }
        assert_eq!(t.locked(&["account:a"], now), None);
        t.failure("account:a", 5, now);
        assert_eq!(t.locked(&["account:a"], now), Some(1));
        t.failure("account:a", 5, now);
        assert_eq!(t.locked(&["account:a"], now), Some(2));
        assert_eq!(
            t.locked(&["account:a"], now + chrono::Duration::seconds(3)),
            None
        );
        t.success("account:a");
        assert_eq!(t.locked(&["account:a"], now), None);
    }
}
