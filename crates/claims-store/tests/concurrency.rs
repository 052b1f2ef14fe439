//! Accumulators stay exact when two workers decide claims of the same member at once: the
//! household lock serializes their batches.

mod common;

use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::ids::MemberId;
use claims_store::Store;
use common::*;

/// The French per-visit charge: 2,00 € a visit, at most 50,00 € a calendar year.
const YEARLY_CAP: i64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_member_never_exceed_the_annual_cap() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let other = Store::connect(&database.url).await.unwrap();
    // 40 visits on distinct days of 2025: 80,00 € of charges against a 50,00 € cap.
    let visits: Vec<String> = (0..40)
        .map(|day| {
            let date = claims_domain::date::Date::from_ymd(2025, 1, 1).unwrap().add_days(day * 7).unwrap();
            gp_visit(&format!("C-RACE-{day:02}"), &date.to_string())
        })
        .collect();
    let (first, second) = visits.split_at(20);

    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(decide(&store, first, &pack), decide(&other, second, &pack));
    eprintln!("two concurrent batches of 20 decided in {:?}", started.elapsed());

    let key = CounterKey {
        subject: Subject::Member(MemberId::parse("M-C1").unwrap()),
        counter: "per_visit_charge".into(),
        period: "2025".into(),
    };
    assert_eq!(store.counter(&key).await.unwrap(), YEARLY_CAP);
    let deducted: i64 = a
        .iter()
        .chain(&b)
        .map(|handled| body(decision_message(handled)))
        .flat_map(|decision| decision["lines"].as_array().cloned().unwrap_or_default())
        .flat_map(|line| line["compulsory"]["deductions"].as_array().cloned().unwrap_or_default())
        .filter(|deduction| deduction["kind"] == "per_visit_charge")
        .map(|deduction| deduction["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(deducted, YEARLY_CAP);
    other.pool().close().await;
    store.pool().close().await;
    database.drop_database().await;
}
