//! Calendar dates (no time, no zone, no clock) and the periods built from them.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use thiserror::Error;

/// A calendar day. Built only by parsing `YYYY-MM-DD` or by date arithmetic: there is no
/// "today" in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date(NaiveDate);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a valid date (expected YYYY-MM-DD)")]
pub struct BadDate(pub String);

impl Date {
    pub fn parse(text: &str) -> Result<Date, BadDate> {
        let well_formed = text.len() == 10
            && text.bytes().enumerate().all(|(index, byte)| match index {
                4 | 7 => byte == b'-',
                _ => byte.is_ascii_digit(),
            });
        if !well_formed {
            return Err(BadDate(text.to_owned()));
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map(Date).map_err(|_| BadDate(text.to_owned()))
    }

    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        NaiveDate::from_ymd_opt(year, month, day).map(Date)
    }

    pub fn year(self) -> i32 {
        self.0.year()
    }

    pub fn month(self) -> u32 {
        self.0.month()
    }

    pub fn day(self) -> u32 {
        self.0.day()
    }

    /// Days since 0001-01-01 (day 1); used as a counter value for "last used on" counters.
    pub fn day_number(self) -> i64 {
        i64::from(self.0.num_days_from_ce())
    }

    pub fn from_day_number(day_number: i64) -> Option<Date> {
        i32::try_from(day_number).ok().and_then(NaiveDate::from_num_days_from_ce_opt).map(Date)
    }

    pub fn add_days(self, days: i64) -> Option<Date> {
        self.0.checked_add_signed(chrono::TimeDelta::try_days(days)?).map(Date)
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        (later.0 - self.0).num_days()
    }

    pub fn add_months(self, months: u32) -> Option<Date> {
        self.0.checked_add_months(chrono::Months::new(months)).map(Date)
    }

    /// The first day of the calendar quarter after the one holding this date.
    pub fn first_day_of_next_quarter(self) -> Option<Date> {
        let quarter_start_month = (self.month() - 1) / 3 * 3 + 1;
        Date::from_ymd(self.year(), quarter_start_month, 1)?.add_months(3)
    }

    /// Full years of age on `on` for someone born on `self`.
    pub fn age_on(self, on: Date) -> i64 {
        let mut years = i64::from(on.year() - self.year());
        if (on.month(), on.day()) < (self.month(), self.day()) {
            years -= 1;
        }
        years
    }

    pub fn year_month(self) -> YearMonth {
        YearMonth { year: self.year(), month: self.month() }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A calendar month, written `YYYY-MM` (contribution months).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl YearMonth {
    pub fn parse(text: &str) -> Result<YearMonth, BadDate> {
        Date::parse(&format!("{text}-01")).map(Date::year_month).map_err(|_| BadDate(text.to_owned()))
    }

    /// Months from `self` back to `earlier` (0 when equal).
    pub fn months_since(self, earlier: YearMonth) -> i64 {
        i64::from(self.year - earlier.year) * 12 + i64::from(self.month) - i64::from(earlier.month)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// An inclusive period of days: `to` is the last day, `None` means open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Option<Date>,
}

impl Period {
    pub fn contains(&self, day: Date) -> bool {
        self.from <= day && self.to.is_none_or(|to| day <= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        assert!(Date::parse("2025-11-05").is_ok());
        assert!(Date::parse("2025-02-30").is_err());
        assert!(Date::parse("2025-2-03").is_err());
        assert!(Date::parse("+2025-02-03").is_err());
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
    }

    #[test]
    fn computes_quarters_ages_and_days() {
        let date = Date::parse("2025-11-05").unwrap();
        assert_eq!(date.first_day_of_next_quarter().unwrap().to_string(), "2026-01-01");
        let march = Date::parse("2025-03-31").unwrap();
        assert_eq!(march.first_day_of_next_quarter().unwrap().to_string(), "2025-04-01");
        let birth = Date::parse("2008-11-06").unwrap();
        assert_eq!(birth.age_on(date), 16);
        assert_eq!(birth.age_on(Date::parse("2025-11-06").unwrap()), 17);
        assert_eq!(Date::parse("2025-06-10").unwrap().days_until(Date::parse("2025-06-13").unwrap()), 3);
        let day = date.day_number();
        assert_eq!(Date::from_day_number(day).unwrap(), date);
    }

    #[test]
    fn periods_are_inclusive() {
        let period = Period { from: Date::parse("2025-01-01").unwrap(), to: Date::parse("2025-01-31").ok() };
        assert!(period.contains(Date::parse("2025-01-31").unwrap()));
        assert!(!period.contains(Date::parse("2025-02-01").unwrap()));
    }
}
