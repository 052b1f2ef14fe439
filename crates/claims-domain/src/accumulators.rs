//! Accumulators: counters per member or household, per counter name, per period.
//!
//! Scripts never write counters. They declare *limits* ("at most 50,00 of per-visit charges in
//! 2025", "at most 8,00 a day at this provider") and the pipeline applies them here, so every
//! counter move is computed, recorded and reversible in one place.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{HouseholdId, MemberId};
use crate::money::Amount;

/// Who a counter belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Member(MemberId),
    Household(HouseholdId),
}

/// The scope a script names in a limit; resolved to a [`Subject`] for the claim's member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Member,
    Household,
}

/// One counter: subject, name (`per_visit_charge`, `maf`, `debt`…), period (`2025`,
/// `2025-11-05`, `all`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub subject: Subject,
    pub counter: String,
    pub period: String,
}

/// Where an adjudication reads counter values from: the embedded ledger's map, a snapshot
/// loaded by the store, or an audit entry's recorded values. Absent counters are zero.
pub trait CounterSource {
    fn counter_value(&self, key: &CounterKey) -> i64;
}

/// A set of counter values. Absent counters are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    values: BTreeMap<CounterKey, i64>,
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    pub fn get(&self, key: &CounterKey) -> i64 {
        self.values.get(key).copied().unwrap_or(0)
    }

    pub fn set(&mut self, key: CounterKey, value: i64) {
        if value == 0 {
            self.values.remove(&key);
        } else {
            self.values.insert(key, value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&CounterKey, i64)> {
        self.values.iter().map(|(key, value)| (key, *value))
    }

    /// The counters of the given subjects only.
    pub fn for_subjects(&self, subjects: &[Subject]) -> Counters {
        let mut selected = Counters::new();
        for subject in subjects {
            let start = CounterKey { subject: subject.clone(), counter: String::new(), period: String::new() };
            for (key, value) in self.values.range(start..).take_while(|(key, _)| &key.subject == subject) {
                selected.values.insert(key.clone(), *value);
            }
        }
        selected
    }

    /// Applies moves (sets each counter to its `after`).
    pub fn apply(&mut self, moves: &[CounterMove]) {
        for counter_move in moves {
            self.set(counter_move.key.clone(), counter_move.after);
        }
    }
}

impl CounterSource for Counters {
    fn counter_value(&self, key: &CounterKey) -> i64 {
        self.get(key)
    }
}

/// One counter's value before and after one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterMove {
    pub key: CounterKey,
    pub before: i64,
    pub after: i64,
}

impl CounterMove {
    pub fn delta(&self) -> i64 {
        self.after - self.before
    }
}

/// A limit a script declares on an amount: "what is added to `counter` for `period` may not
/// exceed `max`". The special period [`CLAIM_PERIOD`] lives for one claim and is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub counter: String,
    pub scope: Scope,
    pub period: String,
    pub max: Amount,
}

/// Period name of limits that apply within one claim only (e.g. "250,00 per equipment").
pub const CLAIM_PERIOD: &str = "claim";

/// Period name of "last used on" counters (frequencies): their value is a day number, not a sum.
pub const LAST_USE_PERIOD: &str = "last";

/// "Once every N days": the counter holds the day number of the last use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frequency {
    pub counter: String,
    pub days: i64,
}

/// The working state of counters during one claim: values read from the source (remembered,
/// so the audit entry can record exactly what the decision depended on) plus this claim's moves.
pub struct CounterBook<'a> {
    member: MemberId,
    household: HouseholdId,
    source: &'a dyn CounterSource,
    read: BTreeMap<CounterKey, i64>,
    current: BTreeMap<CounterKey, i64>,
    claim_local: BTreeMap<String, i64>,
    used_this_claim: BTreeSet<String>,
}

impl<'a> CounterBook<'a> {
    pub fn new(member: MemberId, household: HouseholdId, source: &'a dyn CounterSource) -> CounterBook<'a> {
        CounterBook {
            member,
            household,
            source,
            read: BTreeMap::new(),
            current: BTreeMap::new(),
            claim_local: BTreeMap::new(),
            used_this_claim: BTreeSet::new(),
        }
    }

    pub fn key(&self, scope: Scope, counter: &str, period: &str) -> CounterKey {
        let subject = match scope {
            Scope::Member => Subject::Member(self.member.clone()),
            Scope::Household => Subject::Household(self.household.clone()),
        };
        CounterKey { subject, counter: counter.to_owned(), period: period.to_owned() }
    }

    /// The value before this claim, read once from the source.
    fn before(&mut self, key: &CounterKey) -> i64 {
        if let Some(value) = self.read.get(key) {
            return *value;
        }
        let value = self.source.counter_value(key);
        self.read.insert(key.clone(), value);
        value
    }

    pub fn value(&mut self, key: &CounterKey) -> i64 {
        match self.current.get(key) {
            Some(value) => *value,
            None => self.before(key),
        }
    }

    pub fn add(&mut self, key: CounterKey, delta: i64) {
        let value = self.value(&key) + delta;
        self.current.insert(key, value);
    }

    /// How much of `amount` the limits let through; the counters are not moved.
    pub fn room(&mut self, amount: Amount, limits: &[Limit]) -> Amount {
        let mut allowed = amount.at_least_zero();
        for limit in limits {
            let used = if limit.period == CLAIM_PERIOD {
                self.claim_local.get(&limit.counter).copied().unwrap_or(0)
            } else {
                let key = self.key(limit.scope, &limit.counter, &limit.period);
                self.value(&key)
            };
            allowed = allowed.min(Amount::from_minor(limit.max.minor_units().saturating_sub(used)).at_least_zero());
        }
        allowed
    }

    /// Lets through as much of `amount` as every limit allows and adds that to each counter.
    pub fn take(&mut self, amount: Amount, limits: &[Limit]) -> Amount {
        let allowed = self.room(amount, limits);
        for limit in limits {
            if limit.period == CLAIM_PERIOD {
                *self.claim_local.entry(limit.counter.clone()).or_insert(0) += allowed.minor_units();
            } else {
                let key = self.key(limit.scope, &limit.counter, &limit.period);
                self.add(key, allowed.minor_units());
            }
        }
        allowed
    }

    /// Whether a "once every N days" benefit may be used on `day_number`; uses made earlier in
    /// this same claim (frame and lenses of one pair) do not count against it.
    pub fn frequency_allows(&mut self, frequency: &Frequency, day_number: i64) -> bool {
        if self.used_this_claim.contains(&frequency.counter) {
            return true;
        }
        let key = self.key(Scope::Member, &frequency.counter, LAST_USE_PERIOD);
        let last = self.before(&key);
        last == 0 || day_number - last >= frequency.days
    }

    pub fn record_use(&mut self, frequency: &Frequency, day_number: i64) {
        let key = self.key(Scope::Member, &frequency.counter, LAST_USE_PERIOD);
        let last = self.value(&key);
        if day_number > last {
            self.current.insert(key, day_number);
        }
        self.used_this_claim.insert(frequency.counter.clone());
    }

    /// The moves this claim made, one per counter that changed, in key order.
    pub fn moves(&self) -> Vec<CounterMove> {
        self.current
            .iter()
            .filter_map(|(key, after)| {
                let before = self.read.get(key).copied().unwrap_or(0);
                (before != *after).then(|| CounterMove { key: key.clone(), before, after: *after })
            })
            .collect()
    }

    /// Every counter value this claim read, as it was before the claim.
    pub fn values_read(&self) -> Counters {
        let mut counters = Counters::new();
        for (key, value) in &self.read {
            counters.values.insert(key.clone(), *value);
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(before: &Counters) -> CounterBook<'_> {
        CounterBook::new(MemberId::parse("M-1").unwrap(), HouseholdId::parse("H-1").unwrap(), before)
    }

    fn limit(counter: &str, period: &str, max: i64) -> Limit {
        Limit { counter: counter.into(), scope: Scope::Member, period: period.into(), max: Amount::from_minor(max) }
    }

    #[test]
    fn the_tightest_limit_wins_and_every_counter_moves() {
        let empty = Counters::new();
        let mut before = Counters::new();
        before.set(book(&empty).key(Scope::Member, "deductible", "2025"), 4850);
        let mut probe = book(&before);
        let limits = [limit("deductible", "2025", 5000), limit("deductible_day", "2025-11-05", 400)];
        assert_eq!(probe.take(Amount::from_minor(300), &limits), Amount::from_minor(150));
        assert_eq!(probe.take(Amount::from_minor(100), &limits), Amount::ZERO);
        let moves = probe.moves();
        assert_eq!(moves.len(), 2);
        assert_eq!((moves[0].before, moves[0].after), (4850, 5000));
        assert_eq!((moves[1].before, moves[1].after), (0, 150));
    }

    #[test]
    fn claim_limits_are_not_stored() {
        let empty = Counters::new();
        let mut probe = book(&empty);
        let limits = [limit("optics", CLAIM_PERIOD, 25000)];
        assert_eq!(probe.take(Amount::from_minor(20000), &limits), Amount::from_minor(20000));
        assert_eq!(probe.take(Amount::from_minor(20000), &limits), Amount::from_minor(5000));
        assert!(probe.moves().is_empty());
    }

    #[test]
    fn frequency_counts_other_claims_only() {
        let frequency = Frequency { counter: "optics_b".into(), days: 730 };
        let empty = Counters::new();
        let mut first = book(&empty);
        assert!(first.frequency_allows(&frequency, 1000));
        first.record_use(&frequency, 1000);
        assert!(first.frequency_allows(&frequency, 1000));
        let mut after = Counters::new();
        after.apply(&first.moves());
        let mut second = book(&after);
        assert!(!second.frequency_allows(&frequency, 1500));
        assert!(second.frequency_allows(&frequency, 1730));
    }
}
