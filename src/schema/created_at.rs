//! An order's creation time, read from whatever the shop stored in `createdAt` (see
//! [`effective_created_at`]). A value that is a time in no plausible unit is never guessed at:
//! the order is parked naming the field, instead of being read as 1970 (reconciled at once, and
//! cancelled as timed out) or as the year 58,000 (never reconciled, and counted nowhere).

use mongodb::bson::{Bson, DateTime, Document};

use super::{get_path, Schema};
use crate::domain::order::bad;
use crate::domain::OrderError;

/// The earliest creation time believed (2000-01-01, in ms): a time before it is a number read in
/// the wrong unit (`new Date(seconds)` lands in January 1970), not an order of this shop.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 946_684_800_000;

/// How far in the future a creation time may lie (clock skew between the shop's servers and
/// ours); later is a number read in the wrong unit (microseconds read as milliseconds land in
/// the year 58,000), never reconciled if believed.
pub const FUTURE_TOLERANCE_MS: i64 = 86_400_000;

/// The units an epoch number is read in, each 1,000 times the one before, with how many
/// milliseconds one unit is (a fraction for the sub-millisecond ones).
const EPOCH_UNITS: [(&str, f64); 4] = [
    ("seconds", 1_000.0),
    ("milliseconds", 1.0),
    ("microseconds", 0.001),
    ("nanoseconds", 0.000_001),
];

/// When an order was created, whatever type the shop stored `createdAt` as: a BSON date; an
/// ISO 8601 / RFC 3339 string (JavaScript's `toISOString()`); an epoch number (Int32, Int64 or a
/// whole Double) in seconds, milliseconds (`Date.now()`), microseconds or nanoseconds, the unit
/// being the one its size fits (the ranges of a plausible time in each unit do not overlap).
/// A date or a number that is no plausible time (before 2000, or more than a day ahead of now)
/// is not guessed at: the error names `createdAt` and the order is parked. When `createdAt` is
/// missing, `null`, or of another type, the time in an ObjectId `_id` (when the shop inserted
/// the order). Fails, naming `createdAt`, when no time can be had.
pub fn effective_created_at(doc: &Document, schema: &Schema) -> Result<DateTime, OrderError> {
    let field = &schema.orders.created_at;
    match get_path(doc, field).map(|v| read_time(v, DateTime::now())) {
        Some(Time::At(t)) => return Ok(t),
        Some(Time::Implausible(why)) => return Err(bad(field, why)),
        Some(Time::None) | None => {}
    }
    match doc.get("_id") {
        Some(Bson::ObjectId(oid)) => Ok(oid.timestamp()),
        _ => Err(bad(
            field,
            "is missing or not a date (a BSON date, an ISO 8601 string or an epoch number), \
             and `_id` is not an ObjectId to take the creation time from",
        )),
    }
}

/// What one `createdAt` value says.
#[derive(Debug, Clone, PartialEq)]
enum Time {
    At(DateTime),
    /// A date or a number, but no plausible time in any unit (the problem, without the value).
    Implausible(String),
    /// Not a time at all (another type, an unparsable string).
    None,
}

fn plausible(ms: i64, now: DateTime) -> bool {
    (EARLIEST_PLAUSIBLE_MS..=now.timestamp_millis().saturating_add(FUTURE_TOLERANCE_MS)).contains(&ms)
}

/// A creation time from one `createdAt` value, at `now`.
fn read_time(v: &Bson, now: DateTime) -> Time {
    let n = match v {
        Bson::DateTime(d) if plausible(d.timestamp_millis(), now) => return Time::At(*d),
        Bson::DateTime(_) => return Time::Implausible("is a date before 2000 or more than a day in the future".into()),
        Bson::String(s) => {
            return match DateTime::parse_rfc3339_str(s.trim()) {
                Ok(d) if plausible(d.timestamp_millis(), now) => Time::At(d),
                Ok(_) => Time::Implausible("is a time before 2000 or more than a day in the future".into()),
                Err(_) => Time::None,
            }
        }
        Bson::Int32(n) => f64::from(*n),
        Bson::Int64(n) => *n as f64,
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 => *f,
        Bson::Double(_) => return Time::Implausible("is not a whole epoch number".into()),
        _ => return Time::None,
    };
    for (_, ms_per_unit) in EPOCH_UNITS {
        let ms = (n * ms_per_unit).floor();
        if ms.abs() < 9.0e15 && plausible(ms as i64, now) {
            return Time::At(DateTime::from_millis(ms as i64));
        }
    }
    Time::Implausible(
        "is an epoch number that is no time between 2000 and tomorrow in seconds, milliseconds, \
         microseconds or nanoseconds"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId};

    const NOW_MS: i64 = 1_796_000_000_000; // 2026-11-30
    const T_MS: i64 = 1_790_000_000_000; // 2026-09-21

    fn now() -> DateTime {
        DateTime::from_millis(NOW_MS)
    }

    #[test]
    fn epoch_numbers_are_read_in_the_unit_their_size_fits() {
        let t = DateTime::from_millis(T_MS);
        let cases = [
            Bson::Int32(1_790_000_000),
            Bson::Int64(1_790_000_000),
            Bson::Double(1_790_000_000.0),
            Bson::Int64(T_MS),
            Bson::Double(T_MS as f64),
            Bson::Int64(T_MS * 1_000),
            Bson::Double(T_MS as f64 * 1_000.0),
            Bson::Int64(T_MS * 1_000_000),
            Bson::DateTime(t),
            Bson::String("2026-09-21T14:13:20.000Z".into()),
            Bson::String("2026-09-21T19:43:20+05:30".into()),
        ];
        for v in cases {
            assert_eq!(read_time(&v, now()), Time::At(t), "{v:?}");
        }
    }

    #[test]
    fn a_date_or_number_that_is_no_plausible_time_is_not_guessed_at() {
        let far_future = NOW_MS + 2 * FUTURE_TOLERANCE_MS;
        let cases = [
            Bson::Int32(17),
            Bson::Int64(-T_MS),
            Bson::Double(T_MS as f64 + 0.5),
            Bson::Double(f64::NAN),
            Bson::Double(f64::INFINITY),
            Bson::Double(9.0e15),
            Bson::DateTime(DateTime::from_millis(1_790_000_000)), // `new Date(seconds)`: 1970
            Bson::DateTime(DateTime::from_millis(far_future)),
            Bson::DateTime(DateTime::from_millis(T_MS * 1_000)), // microseconds in a Date
            Bson::Int64(far_future),
            Bson::String("1970-01-21T17:13:20Z".into()),
        ];
        for v in cases {
            assert!(matches!(read_time(&v, now()), Time::Implausible(_)), "{v:?}");
        }
        // Within a day ahead: clock skew between the shop's servers and ours.
        let soon = NOW_MS + FUTURE_TOLERANCE_MS / 2;
        assert_eq!(
            read_time(&Bson::Int64(soon), now()),
            Time::At(DateTime::from_millis(soon))
        );
    }

    fn good() -> Document {
        doc! { "_id": ObjectId::parse_str("66f2d5a00000000000000000").unwrap(), "createdAt": DateTime::now() }
    }

    #[test]
    fn an_implausible_time_names_the_field_even_with_an_object_id() {
        let mut d = good();
        d.insert("createdAt", Bson::Int64(i64::MAX / 2)); // nanoseconds of the year 2116
        let err = effective_created_at(&d, &Schema::default()).unwrap_err();
        assert_eq!(err.field, "createdAt", "{err}");
        assert!(err.problem.contains("no time between 2000 and tomorrow"), "{err}");
    }

    #[test]
    fn no_time_at_all_falls_back_to_the_object_id_or_names_the_field() {
        let oid = ObjectId::parse_str("66f2d5a00000000000000000").unwrap();
        let unusable: Vec<Option<Bson>> = vec![
            None,
            Some(Bson::Null),
            Some(Bson::String("yesterday".into())),
            Some(Bson::Boolean(true)),
        ];
        for v in unusable {
            let mut d = good();
            match &v {
                Some(v) => d.insert("createdAt", v.clone()),
                None => d.remove("createdAt"),
            };
            assert_eq!(
                effective_created_at(&d, &Schema::default()),
                Ok(oid.timestamp()),
                "{v:?}"
            );
            d.insert("_id", "order-17");
            let err = effective_created_at(&d, &Schema::default()).unwrap_err();
            assert_eq!(err.field, "createdAt", "{v:?}: {err}");
            assert!(
                !err.to_string().contains("yesterday"),
                "the value is not repeated: {err}"
            );
        }
    }
}
