//! The batch's working copy of counters and line history: loaded once under the household
//! locks, changed in memory message after message (so a later claim of the batch sees an
//! earlier one's moves, as in the embedded ledger), and written back in bulk at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use claims_domain::accumulators::{CounterKey, CounterMove, CounterSource, Subject};
use claims_domain::date::Date;
use claims_domain::ids::{ActCode, ProviderId};
use claims_domain::money::Amount;
use claims_domain::pipeline::{History, LineFingerprint};
use sqlx::PgConnection;

use crate::StoreError;
use crate::stored::{subject_from_parts, subject_parts};

// PROBE: the lookups below read a few hundred keys out of tables that grow without bound. As a
// join of the key array with the table, the planner (costing an index probe like a disk seek)
// chose to sort or hash the whole table on every batch: 4 to 7 ms for 5 000 counters, and a
// sequential scan of the whole line history, growing with it. A `LATERAL` subquery behind
// `OFFSET 0` cannot be merged into a join, so each key is an index probe whatever the table's
// size or statistics.

/// `(subject_kind, subject_id, counter, period, value)`, as read.
type CounterRow = (String, String, String, String, i64);
/// `(member_id, service_date, provider_id, act, charged, origin_provider_id, origin_claim_id)`.
type HistoryRowRead = (String, String, String, String, i64, String, String);

/// The line history of each wanted member-day, from parameter `$first` on (member ids, dates):
/// one index probe per member-day (see `PROBE`). `tag` is put before the columns.
fn history_by_day(first: usize, tag: &str) -> String {
    let (members, dates) = (first, first + 1);
    format!(
        "SELECT {tag}h.member_id, h.service_date::text, h.provider_id, h.act, h.charged,
                h.origin_provider_id, h.origin_claim_id
         FROM unnest(${members}::text[], ${dates}::date[]) AS w(member_id, service_date)
         CROSS JOIN LATERAL (
             SELECT * FROM line_history h
             WHERE h.member_id = w.member_id AND h.service_date = w.service_date
             OFFSET 0) AS h"
    )
}

static HISTORY_BY_DAY: LazyLock<String> = LazyLock::new(|| history_by_day(1, ""));

/// Every counter of each wanted `(subject, period)` ($1 to $3: kinds, ids, periods; one index
/// probe per wanted period, see `PROBE`), then the history of each wanted member-day ($4, $5):
/// a first column says which read a row answers, and a counter row's last two are null.
static PRELOAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT true, c.subject_kind, c.subject_id, c.counter, c.period, c.value, NULL::text, NULL::text
         FROM unnest($1::text[], $2::text[], $3::text[]) AS w(kind, id, period)
         CROSS JOIN LATERAL (
             SELECT * FROM counters c
             WHERE c.subject_kind = w.kind AND c.subject_id = w.id AND c.period = w.period
             OFFSET 0) AS c
         UNION ALL
         {}",
        history_by_day(4, "false, ")
    )
});

/// The batch's first reads under its household locks, in one round trip: every counter of each
/// wanted `(subject, period)` (an absent row is then zero) and the line history of each wanted
/// member-day.
pub(crate) async fn preload(
    connection: &mut PgConnection,
    counters: &mut CounterCache,
    periods: impl IntoIterator<Item = (Subject, String)>,
    history: &mut HistoryCache,
    days: impl IntoIterator<Item = (String, Date)>,
) -> Result<(), StoreError> {
    let periods = counters.unloaded_periods(periods);
    let days = history.unloaded_days(days);
    if periods.is_empty() && days.is_empty() {
        return Ok(());
    }
    let (mut kinds, mut ids, mut period_names) = (Vec::new(), Vec::new(), Vec::new());
    for (subject, period) in &periods {
        let (kind, id) = subject_parts(subject);
        kinds.push(kind.to_owned());
        ids.push(id.to_owned());
        period_names.push(period.clone());
    }
    let (members, dates) = day_columns(&days);
    type Row = (bool, String, String, String, String, i64, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(PRELOAD.as_str())
        .bind(&kinds)
        .bind(&ids)
        .bind(&period_names)
        .bind(&members)
        .bind(&dates)
        .fetch_all(connection)
        .await?;
    let (mut counter_rows, mut history_rows) = (Vec::new(), Vec::new());
    for (is_counter, a, b, c, d, number, origin_provider, origin_claim) in rows {
        if is_counter {
            counter_rows.push((a, b, c, d, number));
        } else {
            let (Some(origin_provider), Some(origin_claim)) = (origin_provider, origin_claim) else {
                return Err(StoreError::Corrupt(format!("line_history of member {a}: a row without its origin")));
            };
            history_rows.push((a, b, c, d, number, origin_provider, origin_claim));
        }
    }
    counters.absorb_periods(periods, counter_rows)?;
    history.absorb(days, history_rows)
}

/// `(member ids, dates)` columns of member-days.
fn day_columns(days: &BTreeSet<(String, Date)>) -> (Vec<String>, Vec<String>) {
    days.iter().map(|(member, date)| (member.clone(), date.to_string())).unzip()
}

/// Counter values known to the batch. A key is *covered* when its value is known: loaded
/// exactly, or its `(subject, period)` was loaded whole (then an absent row means zero).
#[derive(Default)]
pub(crate) struct CounterCache {
    values: HashMap<CounterKey, i64>,
    whole_periods: HashSet<(Subject, String)>,
    changed: BTreeSet<CounterKey>,
}

impl CounterSource for CounterCache {
    fn counter_value(&self, key: &CounterKey) -> i64 {
        self.values.get(key).copied().unwrap_or(0)
    }
}

impl CounterCache {
    pub(crate) fn covers(&self, key: &CounterKey) -> bool {
        self.values.contains_key(key) || self.whole_periods.contains(&(key.subject.clone(), key.period.clone()))
    }

    /// The wanted `(subject, period)`s not loaded whole yet.
    fn unloaded_periods(&self, wanted: impl IntoIterator<Item = (Subject, String)>) -> BTreeSet<(Subject, String)> {
        wanted.into_iter().filter(|pair| !self.whole_periods.contains(pair)).collect()
    }

    /// Takes in the rows read for `periods`, which are then loaded whole.
    fn absorb_periods(
        &mut self,
        periods: BTreeSet<(Subject, String)>,
        rows: Vec<CounterRow>,
    ) -> Result<(), StoreError> {
        for (kind, id, counter, period, value) in rows {
            let key = CounterKey { subject: subject_from_parts(&kind, &id)?, counter, period };
            // A value this batch already changed is newer than the table's.
            self.values.entry(key).or_insert(value);
        }
        self.whole_periods.extend(periods);
        Ok(())
    }

    /// Loads exactly these keys (those not covered yet); absent rows are zero.
    pub(crate) async fn load_keys(
        &mut self,
        connection: &mut PgConnection,
        keys: impl IntoIterator<Item = CounterKey>,
    ) -> Result<(), StoreError> {
        let missing: BTreeSet<CounterKey> = keys.into_iter().filter(|key| !self.covers(key)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let (mut kinds, mut ids, mut counters, mut periods) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in &missing {
            let (kind, id) = subject_parts(&key.subject);
            kinds.push(kind.to_owned());
            ids.push(id.to_owned());
            counters.push(key.counter.clone());
            periods.push(key.period.clone());
        }
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            // One index probe per wanted counter (see `PROBE`).
            "SELECT c.subject_kind, c.subject_id, c.counter, c.period, c.value
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS w(kind, id, counter, period)
             CROSS JOIN LATERAL (
                 SELECT * FROM counters c
                 WHERE c.subject_kind = w.kind AND c.subject_id = w.id AND c.period = w.period
                   AND c.counter = w.counter
                 OFFSET 0) AS c",
        )
        .bind(&kinds)
        .bind(&ids)
        .bind(&counters)
        .bind(&periods)
        .fetch_all(connection)
        .await?;
        let mut found: HashMap<CounterKey, i64> = HashMap::new();
        for (kind, id, counter, period, value) in rows {
            found.insert(CounterKey { subject: subject_from_parts(&kind, &id)?, counter, period }, value);
        }
        for key in missing {
            let value = found.get(&key).copied().unwrap_or(0);
            self.values.insert(key, value);
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, moves: &[CounterMove]) {
        for counter_move in moves {
            self.values.insert(counter_move.key.clone(), counter_move.after);
            self.changed.insert(counter_move.key.clone());
        }
    }

    /// The counters this batch moved, with their final values.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&CounterKey, i64)> {
        self.changed.iter().map(|key| (key, self.counter_value(key)))
    }
}

/// Who first recorded a line: `(provider_id, claim_id)`.
pub(crate) type Origin = (String, String);

/// A member's decided lines on one day, as loaded and as the batch left them.
#[derive(Default)]
struct Day {
    loaded: BTreeMap<LineFingerprint, Origin>,
    current: BTreeMap<LineFingerprint, Origin>,
}

/// Line history per `(member_id, service_date)` loaded so far.
#[derive(Default)]
pub(crate) struct HistoryCache {
    days: BTreeMap<(String, Date), Day>,
}

/// One `line_history` row.
pub(crate) struct HistoryRow<'a> {
    pub member_id: &'a str,
    pub fingerprint: &'a LineFingerprint,
    pub origin: &'a Origin,
}

impl HistoryCache {
    /// Loads the member-days not loaded yet.
    pub(crate) async fn load(
        &mut self,
        connection: &mut PgConnection,
        wanted: impl IntoIterator<Item = (String, Date)>,
    ) -> Result<(), StoreError> {
        let wanted = self.unloaded_days(wanted);
        if wanted.is_empty() {
            return Ok(());
        }
        let (members, dates) = day_columns(&wanted);
        let rows: Vec<HistoryRowRead> =
            sqlx::query_as(HISTORY_BY_DAY.as_str()).bind(&members).bind(&dates).fetch_all(connection).await?;
        self.absorb(wanted, rows)
    }

    fn unloaded_days(&self, wanted: impl IntoIterator<Item = (String, Date)>) -> BTreeSet<(String, Date)> {
        wanted.into_iter().filter(|day| !self.days.contains_key(day)).collect()
    }

    /// Takes in the rows read for `days`, which are then loaded.
    fn absorb(&mut self, days: BTreeSet<(String, Date)>, rows: Vec<HistoryRowRead>) -> Result<(), StoreError> {
        for day in days {
            self.days.insert(day, Day::default());
        }
        for (member_id, service_date, provider_id, act, charged, origin_provider, origin_claim) in rows {
            let corrupt = |error: String| StoreError::Corrupt(format!("line_history of member {member_id}: {error}"));
            let fingerprint = LineFingerprint {
                service_date: Date::parse(&service_date).map_err(|error| corrupt(error.0))?,
                provider_id: ProviderId::parse(&provider_id).map_err(|error| corrupt(error.to_string()))?,
                act: ActCode::parse(&act).map_err(|error| corrupt(error.to_string()))?,
                charged: Amount::from_minor(charged),
            };
            if let Some(day) = self.days.get_mut(&(member_id.clone(), fingerprint.service_date)) {
                // Several rows may hold the same line (different origins): one is enough, as in
                // the ledger's set.
                day.loaded
                    .entry(fingerprint.clone())
                    .or_insert_with(|| (origin_provider.clone(), origin_claim.clone()));
                day.current.entry(fingerprint).or_insert((origin_provider, origin_claim));
            }
        }
        Ok(())
    }

    /// The member's lines on these days (all duplicate detection needs).
    pub(crate) fn on_days(&self, member_id: &str, dates: &BTreeSet<Date>) -> History {
        History::new(
            dates
                .iter()
                .filter_map(|date| self.days.get(&(member_id.to_owned(), *date)))
                .flat_map(|day| day.current.keys().cloned()),
        )
    }

    pub(crate) fn add(&mut self, member_id: &str, fingerprints: &[LineFingerprint], origin: &Origin) {
        for fingerprint in fingerprints {
            let day = self.days.entry((member_id.to_owned(), fingerprint.service_date)).or_default();
            day.current.entry(fingerprint.clone()).or_insert_with(|| origin.clone());
        }
    }

    pub(crate) fn remove(&mut self, member_id: &str, fingerprints: &[LineFingerprint]) {
        for fingerprint in fingerprints {
            if let Some(day) = self.days.get_mut(&(member_id.to_owned(), fingerprint.service_date)) {
                day.current.remove(fingerprint);
            }
        }
    }

    /// Rows to delete (every row holding a line that is gone) and rows to insert.
    pub(crate) fn changes(&self) -> (Vec<HistoryRow<'_>>, Vec<HistoryRow<'_>>) {
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        for ((member_id, _), day) in &self.days {
            for (fingerprint, origin) in &day.loaded {
                if !day.current.contains_key(fingerprint) {
                    deleted.push(HistoryRow { member_id, fingerprint, origin });
                }
            }
            for (fingerprint, origin) in &day.current {
                if !day.loaded.contains_key(fingerprint) {
                    inserted.push(HistoryRow { member_id, fingerprint, origin });
                }
            }
        }
        (deleted, inserted)
    }
}
