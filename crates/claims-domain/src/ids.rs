//! Identifier newtypes: claim, provider, member, household, act, plan, agreement.
//!
//! Every id is parsed once at the boundary: 1 to 64 characters of ASCII letters, digits and
//! `-_.:/`, so ids are safe in logs, file names, routing keys and SQL alike.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 64 characters")]
    TooLong,
    #[error("contains {0:?}; ids use ASCII letters, digits and - _ . : /")]
    BadCharacter(char),
}

/// Whether `c` may appear in an id.
pub fn is_id_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:/".contains(c)
}

fn check_id(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.chars().count() > 64 {
        return Err(IdError::TooLong);
    }
    match text.chars().find(|c| !is_id_character(*c)) {
        Some(bad) => Err(IdError::BadCharacter(bad)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, IdError> {
                check_id(text).map(|()| $name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The provider's own identifier of a claim; unique per provider.
    ClaimId
);
id_type!(
    /// A care provider (doctor, pharmacy, hospital…).
    ProviderId
);
id_type!(
    /// A member of the mutual.
    MemberId
);
id_type!(
    /// Members sharing a household share household-level counters (e.g. Belgian maximum billing).
    HouseholdId
);
id_type!(
    /// An act code from the pack's nomenclature (`G`, `CS`, `PH7`, `101076`…).
    ActCode
);
id_type!(
    /// A plan name: a compulsory scheme (`RG`) or a supplementary product (`CONFORT`).
    PlanName
);
id_type!(
    /// A provider agreement (convention) name, e.g. `fr-medecins`.
    AgreementName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_names_the_problem() {
        assert!(ClaimId::parse("C-000123").is_ok());
        assert_eq!(ClaimId::parse(""), Err(IdError::Empty));
        assert_eq!(MemberId::parse("M é"), Err(IdError::BadCharacter(' ')));
        assert_eq!(MemberId::parse("Mé"), Err(IdError::BadCharacter('é')));
        assert_eq!(MemberId::parse(&"x".repeat(65)), Err(IdError::TooLong));
    }
}
