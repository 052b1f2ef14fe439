//! Exact money: integer minor units of one currency, rates in basis points, named rounding.
//!
//! No floating point anywhere: a rate is applied with `i128` arithmetic and one of the named
//! [`Rounding`] modes chosen by the rule pack.

use std::fmt;

use thiserror::Error;

/// An ISO 4217 currency code with the number of decimal places of its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    minor_digits: u8,
}

/// Currencies the engine knows the minor unit of (EUR cents; XOF and XAF have none).
const KNOWN_CURRENCIES: &[(&str, u8)] =
    &[("EUR", 2), ("XOF", 0), ("XAF", 0), ("USD", 2), ("GBP", 2), ("CHF", 2), ("MAD", 2), ("TND", 3)];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown currency {0:?} (known: EUR, XOF, XAF, USD, GBP, CHF, MAD, TND)")]
pub struct UnknownCurrency(pub String);

impl Currency {
    pub const EUR: Currency = Currency { code: *b"EUR", minor_digits: 2 };
    pub const XOF: Currency = Currency { code: *b"XOF", minor_digits: 0 };

    pub fn parse(code: &str) -> Result<Currency, UnknownCurrency> {
        KNOWN_CURRENCIES
            .iter()
            .find(|(known, _)| *known == code)
            .map(|(known, minor_digits)| {
                let bytes = known.as_bytes();
                Currency { code: [bytes[0], bytes[1], bytes[2]], minor_digits: *minor_digits }
            })
            .ok_or_else(|| UnknownCurrency(code.to_owned()))
    }

    pub fn code(&self) -> &str {
        // The code is always three ASCII letters taken from KNOWN_CURRENCIES.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    pub fn minor_digits(&self) -> u8 {
        self.minor_digits
    }
}

impl Currency {
    /// `amount` written for people: `40.00 EUR`, `1000 XOF`.
    pub fn format(&self, amount: Amount) -> String {
        let digits = u32::from(self.minor_digits);
        if digits == 0 {
            return format!("{} {}", amount.minor_units(), self.code());
        }
        let scale = 10_i64.pow(digits);
        let minor = amount.minor_units();
        let sign = if minor < 0 { "-" } else { "" };
        let magnitude = minor.unsigned_abs();
        let scale = scale.unsigned_abs();
        format!("{sign}{}.{:0width$} {}", magnitude / scale, magnitude % scale, self.code(), width = digits as usize)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount in minor units (cents for EUR, francs for XOF). Signed so that reversals can
/// negate payments; every constructor and operation is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("amount overflow")]
pub struct AmountOverflow;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_minor(minor_units: i64) -> Amount {
        Amount(minor_units)
    }

    pub const fn minor_units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountOverflow> {
        self.0.checked_add(other.0).map(Amount).ok_or(AmountOverflow)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountOverflow> {
        self.0.checked_sub(other.0).map(Amount).ok_or(AmountOverflow)
    }

    pub fn checked_neg(self) -> Result<Amount, AmountOverflow> {
        self.0.checked_neg().map(Amount).ok_or(AmountOverflow)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Amount) -> Amount {
        Amount(self.0.min(other.0))
    }

    /// The larger of two amounts.
    pub fn max(self, other: Amount) -> Amount {
        Amount(self.0.max(other.0))
    }

    /// Zero when negative.
    pub fn at_least_zero(self) -> Amount {
        self.max(Amount::ZERO)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rate in basis points: 7000 is 70 %. Supplementary formulas go above 100 % ("300 % of the
/// base"), so the type allows up to 100 000 bps; compulsory rates are checked against 10 000 by
/// the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateBps(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("rate of {0} basis points is outside 0..=100000")]
pub struct RateOutOfRange(pub i64);

impl RateBps {
    pub const FULL: RateBps = RateBps(10_000);
    pub const ZERO: RateBps = RateBps(0);
    pub const MAX_BPS: u32 = 100_000;

    pub fn new(bps: i64) -> Result<RateBps, RateOutOfRange> {
        if (0..=i64::from(Self::MAX_BPS)).contains(&bps) { Ok(RateBps(bps as u32)) } else { Err(RateOutOfRange(bps)) }
    }

    pub fn bps(self) -> u32 {
        self.0
    }

    /// `amount × rate`, rounded to the minor unit with the given mode.
    pub fn apply(self, amount: Amount, rounding: Rounding) -> Result<Amount, AmountOverflow> {
        let product = i128::from(amount.minor_units()) * i128::from(self.0);
        let rounded = rounding.divide(product, 10_000);
        i64::try_from(rounded).map(Amount).map_err(|_| AmountOverflow)
    }
}

/// How a rule pack rounds a rate applied to an amount. Named, fixed per pack, recorded by the
/// pack's content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Midpoint away from zero (commercial rounding): 0.5 cent → 1 cent.
    HalfUp,
    /// Midpoint to the even neighbour (banker's rounding).
    HalfEven,
    /// Toward zero: the payer never pays a fraction it does not owe.
    Down,
    /// Away from zero.
    Up,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown rounding {0:?} (expected half_up, half_even, down or up)")]
pub struct UnknownRounding(pub String);

impl Rounding {
    pub fn parse(name: &str) -> Result<Rounding, UnknownRounding> {
        match name {
            "half_up" => Ok(Rounding::HalfUp),
            "half_even" => Ok(Rounding::HalfEven),
            "down" => Ok(Rounding::Down),
            "up" => Ok(Rounding::Up),
            other => Err(UnknownRounding(other.to_owned())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rounding::HalfUp => "half_up",
            Rounding::HalfEven => "half_even",
            Rounding::Down => "down",
            Rounding::Up => "up",
        }
    }

    /// `numerator / denominator` rounded with this mode; `denominator` must be positive.
    pub fn divide(self, numerator: i128, denominator: i128) -> i128 {
        let quotient = numerator / denominator;
        let remainder = numerator % denominator;
        if remainder == 0 {
            return quotient;
        }
        let away = if numerator < 0 { quotient - 1 } else { quotient + 1 };
        let twice_remainder = remainder.abs() * 2;
        match self {
            Rounding::Down => quotient,
            Rounding::Up => away,
            Rounding::HalfUp => {
                if twice_remainder >= denominator {
                    away
                } else {
                    quotient
                }
            }
            Rounding::HalfEven => match twice_remainder.cmp(&denominator) {
                std::cmp::Ordering::Greater => away,
                std::cmp::Ordering::Less => quotient,
                std::cmp::Ordering::Equal if quotient % 2 == 0 => quotient,
                std::cmp::Ordering::Equal => away,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_rates_exactly() {
        let rate = RateBps::new(7000).unwrap();
        assert_eq!(rate.apply(Amount::from_minor(3150), Rounding::HalfUp).unwrap(), Amount::from_minor(2205));
        assert_eq!(rate.apply(Amount::from_minor(3000), Rounding::HalfUp).unwrap(), Amount::from_minor(2100));
    }

    #[test]
    fn rounding_modes_differ_at_the_midpoint() {
        // 0.5 exactly: 1 × 5000 bps.
        let half = RateBps::new(5000).unwrap();
        let one = Amount::from_minor(1);
        let three = Amount::from_minor(3);
        assert_eq!(half.apply(one, Rounding::HalfUp).unwrap(), Amount::from_minor(1));
        assert_eq!(half.apply(one, Rounding::HalfEven).unwrap(), Amount::from_minor(0));
        assert_eq!(half.apply(three, Rounding::HalfEven).unwrap(), Amount::from_minor(2));
        assert_eq!(half.apply(one, Rounding::Down).unwrap(), Amount::from_minor(0));
        assert_eq!(RateBps::new(1).unwrap().apply(one, Rounding::Up).unwrap(), Amount::from_minor(1));
        assert_eq!(Rounding::HalfUp.divide(-15, 10), -2);
    }

    #[test]
    fn rejects_rates_out_of_range_and_overflow() {
        assert!(RateBps::new(-1).is_err());
        assert!(RateBps::new(100_001).is_err());
        let max = Amount::from_minor(i64::MAX);
        assert_eq!(RateBps::new(20_000).unwrap().apply(max, Rounding::HalfUp), Err(AmountOverflow));
        assert_eq!(max.checked_add(Amount::from_minor(1)), Err(AmountOverflow));
    }

    #[test]
    fn formats_amounts_for_people() {
        assert_eq!(Currency::EUR.format(Amount::from_minor(4000)), "40.00 EUR");
        assert_eq!(Currency::EUR.format(Amount::from_minor(-5)), "-0.05 EUR");
        assert_eq!(Currency::XOF.format(Amount::from_minor(1000)), "1000 XOF");
    }

    #[test]
    fn knows_minor_units() {
        assert_eq!(Currency::parse("EUR").unwrap().minor_digits(), 2);
        assert_eq!(Currency::parse("XOF").unwrap().minor_digits(), 0);
        assert!(Currency::parse("eur").is_err());
    }
}
