//! Timestamps as both databases should hold them.
//!
//! PostgreSQL gets a `TIMESTAMPTZ`. SQLite has no time type, and sqlx's default text for
//! `OffsetDateTime` varies in its fractional digits, so those texts do not sort in time
//! order. [`DbTime`] writes SQLite timestamps in one fixed UTC format with six fractional
//! digits, so `<`, `ORDER BY` and `MAX` are correct on plain text, and admins reading the
//! file see a readable RFC 3339 time.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant truncated to microseconds (PostgreSQL's precision), so that a value
/// reads back equal to what was written on both backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DbTime(pub OffsetDateTime);

impl DbTime {
    pub(crate) fn new(at: OffsetDateTime) -> DbTime {
        let utc = at.to_offset(UtcOffset::UTC);
        let micros = utc.nanosecond() / 1_000 * 1_000;
        // `replace_nanosecond` only fails above 999_999_999, which truncation rules out.
        DbTime(utc.replace_nanosecond(micros).unwrap_or(utc))
    }

    fn to_sqlite_text(self) -> String {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        // Formatting a UTC date with a four-digit year cannot fail; fall back to RFC 3339.
        self.0
            .format(&format)
            .unwrap_or_else(|_| self.0.format(&Rfc3339).unwrap_or_default())
    }
}

impl From<OffsetDateTime> for DbTime {
    fn from(at: OffsetDateTime) -> DbTime {
        DbTime::new(at)
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.to_sqlite_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbTime::new(OffsetDateTime::parse(text, &Rfc3339)?))
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

/// Arrays of times (the PostgreSQL bulk writers' `timestamptz[]` columns).
impl PgHasArrayType for DbTime {
    fn array_type_info() -> PgTypeInfo {
        <OffsetDateTime as PgHasArrayType>::array_type_info()
    }
    fn array_compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as PgHasArrayType>::array_compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode(self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbTime::new(<OffsetDateTime as Decode<Postgres>>::decode(
            value,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sqlite_text_has_fixed_width_and_sorts_in_time_order() {
        let whole = DbTime::new(datetime!(2026-11-28 12:00:00 UTC));
        let half = DbTime::new(datetime!(2026-11-28 12:00:00.5 UTC));
        let offset = DbTime::new(datetime!(2026-11-28 13:00:00.25 +01:00));
        assert_eq!(whole.to_sqlite_text(), "2026-11-28T12:00:00.000000Z");
        assert!(whole.to_sqlite_text() < half.to_sqlite_text());
        assert!(offset.to_sqlite_text() < half.to_sqlite_text());
    }

    #[test]
    fn truncates_to_microseconds() {
        let at = DbTime::new(datetime!(2026-11-28 12:00:00.123456789 UTC));
        assert_eq!(at.0, datetime!(2026-11-28 12:00:00.123456 UTC));
    }
}
