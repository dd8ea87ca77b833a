//! A fault-injecting wrapper around any [`Storage`], for tests.
//!
//! [`FaultyStorage`] passes every call to the wrapped store unless one of its [`Rule`]s
//! fires. Rules can be added and cleared while a test runs; each names an operation
//! ([`Op`]), optionally a [`Kind`], when it fires ([`Trigger`]: the n-th matching call, every
//! call, each call with a probability from a seeded and therefore deterministic generator)
//! and what it does ([`Fault`]: fail before the call, fail after the call went through,
//! shorten the data, flip one bit). The wrapper counts calls per operation.
//!
//! It must not be used outside tests, must not change the data of calls no rule fired on,
//! and must not depend on outside randomness: the same seed and the same sequence of calls
//! give the same faults.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{Kind, ObjectInfo, Result, Storage, StorageError};

/// A storage operation, as far as fault rules and call counters are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Storage::list`].
    List,
    /// [`Storage::read`].
    Read,
    /// [`Storage::read_range`].
    ReadRange,
    /// [`Storage::write`].
    Write,
    /// [`Storage::delete`].
    Delete,
    /// [`Storage::create`].
    Create,
}

impl Op {
    /// All operations, in a fixed order.
    pub const ALL: [Op; 6] = [
        Op::List,
        Op::Read,
        Op::ReadRange,
        Op::Write,
        Op::Delete,
        Op::Create,
    ];

    fn index(self) -> usize {
        match self {
            Op::List => 0,
            Op::Read => 1,
            Op::ReadRange => 2,
            Op::Write => 3,
            Op::Delete => 4,
            Op::Create => 5,
        }
    }
}

/// When a rule fires, counted over the calls the rule matches (its operation and, if set,
/// its kind) since the rule was added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Only on the n-th matching call (1-based); `Nth(1)` is "the next call, once".
    Nth(u64),
    /// On every matching call.
    Always,
    /// On each matching call with this probability (0.0 ..= 1.0), drawn from the wrapper's
    /// seeded generator.
    Probability(f64),
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with [`StorageError::Injected`] without calling the wrapped store.
    Error,
    /// Call the wrapped store, then fail with [`StorageError::Injected`] anyway (e.g. a
    /// write that landed but whose acknowledgement was lost). A failed inner call keeps its
    /// own error.
    ErrorAfter,
    /// Shorten the data: reads return only the first half of the bytes (at least one byte
    /// less), a write stores only the first half, a listing loses its second half. Ignored
    /// by delete and create, and when there is nothing to shorten.
    ShortRead,
    /// Flip one bit (position from the seeded generator) in the bytes read, or in the bytes
    /// a write stores. Ignored by list, delete, create and for empty data.
    FlipBit,
}

/// One fault-injection rule; build with [`Rule::new`] and the builder methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    op: Op,
    kind: Option<Kind>,
    trigger: Trigger,
    fault: Fault,
}

impl Rule {
    /// A rule doing `fault` on every call of `op` (change with [`Rule::nth`],
    /// [`Rule::probability`], [`Rule::kind`]).
    #[must_use]
    pub fn new(op: Op, fault: Fault) -> Self {
        Self {
            op,
            kind: None,
            trigger: Trigger::Always,
            fault,
        }
    }

    /// Fire only on the n-th matching call (1-based) after the rule is added.
    #[must_use]
    pub fn nth(mut self, n: u64) -> Self {
        self.trigger = Trigger::Nth(n);
        self
    }

    /// Fire only on the next matching call.
    #[must_use]
    pub fn once(self) -> Self {
        self.nth(1)
    }

    /// Fire on every matching call.
    #[must_use]
    pub fn always(mut self) -> Self {
        self.trigger = Trigger::Always;
        self
    }

    /// Fire on each matching call with probability `p` (clamped to 0.0 ..= 1.0).
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.trigger = Trigger::Probability(if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) });
        self
    }

    /// Match only calls on objects of this kind.
    #[must_use]
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }
}

/// A rule and how many calls it has matched.
#[derive(Debug)]
struct Armed {
    rule: Rule,
    seen: u64,
}

/// SplitMix64: tiny, deterministic, good enough to pick faults.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 mantissa exactly
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) for n > 0 (n == 0 gives 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[derive(Debug)]
struct State {
    rules: Vec<Armed>,
    rng: SplitMix,
    calls: [u64; Op::ALL.len()],
    injected: u64,
}

/// The faults chosen for one call.
#[derive(Debug, Default)]
struct Plan {
    error_before: bool,
    error_after: bool,
    short: bool,
    /// Random values picking the bit to flip, one per firing `FlipBit` rule.
    flips: Vec<u64>,
}

/// A [`Storage`] wrapper that injects faults by rules set at run time. Clones share the rules,
/// counters and generator.
#[derive(Clone)]
pub struct FaultyStorage<S: Storage> {
    inner: S,
    state: Arc<Mutex<State>>,
}

impl<S: Storage> std::fmt::Debug for FaultyStorage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FaultyStorage")
            .field("inner", &self.inner)
            .field("rules", &state.rules.len())
            .field("injected", &state.injected)
            .finish()
    }
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner` with no rules; `seed` drives every random choice.
    #[must_use]
    pub fn new(inner: S, seed: u64) -> Self {
        let state = State {
            rules: Vec::new(),
            rng: SplitMix(seed),
            calls: [0; Op::ALL.len()],
            injected: 0,
        };
        Self {
            inner,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The wrapped store.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    #[must_use]
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Adds a rule; its call count starts now.
    pub fn add_rule(&self, rule: Rule) {
        self.lock().rules.push(Armed { rule, seen: 0 });
    }

    /// Removes every rule (counters are kept).
    pub fn clear_rules(&self) {
        self.lock().rules.clear();
    }

    /// Makes the n-th call (1-based, from now) of `op` fail with [`StorageError::Injected`].
    pub fn fail_nth(&self, op: Op, n: u64) {
        self.add_rule(Rule::new(op, Fault::Error).nth(n));
    }

    /// Makes the next call of `op` fail, and later ones succeed.
    pub fn fail_once(&self, op: Op) {
        self.add_rule(Rule::new(op, Fault::Error).once());
    }

    /// Makes every call of `op` fail until [`FaultyStorage::clear_rules`].
    pub fn fail_always(&self, op: Op) {
        self.add_rule(Rule::new(op, Fault::Error).always());
    }

    /// Makes each call of `op` fail with probability `p` (deterministic for a seed).
    pub fn fail_with_probability(&self, op: Op, p: f64) {
        self.add_rule(Rule::new(op, Fault::Error).probability(p));
    }

    /// Makes every `list` fail (an unusable listing) until [`FaultyStorage::clear_rules`].
    pub fn fail_list(&self) {
        self.fail_always(Op::List);
    }

    /// Calls of `op` made so far (including failed ones).
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls[op.index()]
    }

    /// Calls made so far of every operation, in [`Op::ALL`] order.
    #[must_use]
    pub fn all_calls(&self) -> Vec<(Op, u64)> {
        let state = self.lock();
        Op::ALL
            .iter()
            .map(|op| (*op, state.calls[op.index()]))
            .collect()
    }

    /// How many times a rule has fired so far.
    #[must_use]
    pub fn faults_injected(&self) -> u64 {
        self.lock().injected
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is complete before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and decides which rules fire.
    fn plan(&self, op: Op, kind: Option<Kind>) -> Plan {
        let mut state = self.lock();
        let state = &mut *state;
        state.calls[op.index()] += 1;
        let mut plan = Plan::default();
        for armed in &mut state.rules {
            let rule = &armed.rule;
            if rule.op != op || (rule.kind.is_some() && rule.kind != kind) {
                continue;
            }
            armed.seen += 1;
            let fires = match rule.trigger {
                Trigger::Nth(n) => armed.seen == n,
                Trigger::Always => true,
                Trigger::Probability(p) => state.rng.next_f64() < p,
            };
            if !fires {
                continue;
            }
            state.injected += 1;
            match rule.fault {
                Fault::Error => plan.error_before = true,
                Fault::ErrorAfter => plan.error_after = true,
                Fault::ShortRead => plan.short = true,
                Fault::FlipBit => plan.flips.push(state.rng.next_u64()),
            }
        }
        plan
    }

    fn injected(op: Op, kind: Option<Kind>, name: Option<&str>, when: &str) -> StorageError {
        let target = match (kind, name) {
            (Some(kind), Some(name)) => format!(" on {kind:?} {name}"),
            (Some(kind), None) => format!(" on {kind:?}"),
            _ => String::new(),
        };
        StorageError::Injected(format!("{op:?}{target} {when}"))
    }
}

impl Plan {
    /// Applies the data faults to `data`.
    fn mangle(&self, data: Bytes) -> Bytes {
        let mut data = data;
        if self.short && !data.is_empty() {
            data.truncate(data.len() / 2);
        }
        if self.flips.is_empty() || data.is_empty() {
            return data;
        }
        let mut bytes = BytesMut::from(&data[..]);
        let bits = bytes.len() as u64 * 8;
        for r in &self.flips {
            let bit = SplitMix(*r).below(bits);
            let (byte, shift) = (bit / 8, bit % 8);
            if let Some(b) = usize::try_from(byte).ok().and_then(|i| bytes.get_mut(i)) {
                *b ^= 1 << shift;
            }
        }
        bytes.freeze()
    }
}

#[async_trait]
impl<S: Storage> Storage for FaultyStorage<S> {
    fn location(&self) -> String {
        format!("faulty:{}", self.inner.location())
    }

    fn requests_are_costly(&self) -> bool {
        self.inner.requests_are_costly()
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        let plan = self.plan(Op::List, Some(kind));
        if plan.error_before {
            return Err(Self::injected(Op::List, Some(kind), None, "failed"));
        }
        let mut list = self.inner.list(kind).await?;
        if plan.error_after {
            return Err(Self::injected(
                Op::List,
                Some(kind),
                None,
                "failed after the call",
            ));
        }
        if plan.short && !list.is_empty() {
            list.truncate(list.len() / 2);
        }
        Ok(list)
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        let plan = self.plan(Op::Read, Some(kind));
        if plan.error_before {
            return Err(Self::injected(Op::Read, Some(kind), Some(name), "failed"));
        }
        let data = self.inner.read(kind, name).await?;
        if plan.error_after {
            return Err(Self::injected(
                Op::Read,
                Some(kind),
                Some(name),
                "failed after the call",
            ));
        }
        Ok(plan.mangle(data))
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        let plan = self.plan(Op::ReadRange, Some(kind));
        if plan.error_before {
            return Err(Self::injected(
                Op::ReadRange,
                Some(kind),
                Some(name),
                "failed",
            ));
        }
        let data = self.inner.read_range(kind, name, offset, length).await?;
        if plan.error_after {
            let e = Self::injected(
                Op::ReadRange,
                Some(kind),
                Some(name),
                "failed after the call",
            );
            return Err(e);
        }
        Ok(plan.mangle(data))
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        let plan = self.plan(Op::Write, Some(kind));
        if plan.error_before {
            return Err(Self::injected(Op::Write, Some(kind), Some(name), "failed"));
        }
        self.inner.write(kind, name, plan.mangle(data)).await?;
        if plan.error_after {
            return Err(Self::injected(
                Op::Write,
                Some(kind),
                Some(name),
                "failed after the call",
            ));
        }
        Ok(())
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let plan = self.plan(Op::Delete, Some(kind));
        if plan.error_before {
            return Err(Self::injected(Op::Delete, Some(kind), Some(name), "failed"));
        }
        self.inner.delete(kind, name).await?;
        if plan.error_after {
            let e = Self::injected(Op::Delete, Some(kind), Some(name), "failed after the call");
            return Err(e);
        }
        Ok(())
    }

    async fn create(&self) -> Result<()> {
        let plan = self.plan(Op::Create, None);
        if plan.error_before {
            return Err(Self::injected(Op::Create, None, None, "failed"));
        }
        self.inner.create().await?;
        if plan.error_after {
            return Err(Self::injected(
                Op::Create,
                None,
                None,
                "failed after the call",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_spread() {
        let (mut a, mut b) = (SplitMix(7), SplitMix(7));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut r = SplitMix(1);
        let below_half = (0..10_000).filter(|_| r.next_f64() < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn mangle_shortens_and_flips() {
        let plan = Plan {
            short: true,
            ..Plan::default()
        };
        assert_eq!(
            plan.mangle(Bytes::from_static(b"abcd")),
            Bytes::from_static(b"ab")
        );
        assert_eq!(plan.mangle(Bytes::from_static(b"a")), Bytes::new());
        assert_eq!(plan.mangle(Bytes::new()), Bytes::new());
        let plan = Plan {
            flips: vec![12345],
            ..Plan::default()
        };
        let out = plan.mangle(Bytes::from_static(&[0u8; 16]));
        assert_eq!(out.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    }
}
