//! `Schedule`: a parsed cron expression, and the rule for which civil days and minutes match.

use jiff::civil::Date;

use super::field;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Bit `n` for minute `n` (0-59).
    minutes: u64,
    /// Bit `n` for hour `n` (0-23).
    hours: u32,
    /// Bit `n` for day of month `n` (1-31).
    days: u32,
    /// Bit `n` for month `n` (1-12).
    months: u16,
    /// Bit `n` for `n` days after Sunday (0-6).
    weekdays: u8,
    /// Whether the day-of-month field was anything but `*` or `?`.
    days_restricted: bool,
    /// Whether the day-of-week field was anything but `*` or `?`.
    weekdays_restricted: bool,
}

/// A mistake in a cron expression: the byte range inside the expression text, and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    /// Where the mistake starts, a byte offset into the expression.
    pub start: usize,
    /// Where the mistake ends, exclusive.
    pub end: usize,
    /// What is wrong, lowercase and without a trailing period.
    pub message: String,
}

impl CronError {
    pub(super) fn new(start: usize, end: usize, message: String) -> CronError {
        CronError {
            start,
            end,
            message,
        }
    }
}

/// The macros and the five fields each stands for.
const MACROS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

const FIELD_NAMES: &str = "minute hour day-of-month month day-of-week";

impl Schedule {
    /// Parses 5 fields or a macro (@hourly @daily @midnight @weekly @monthly @yearly @annually).
    pub fn parse(expr: &str) -> Result<Schedule, CronError> {
        let tokens = tokens(expr);
        if let Some(&(start, first)) = tokens.first()
            && first.starts_with('@')
        {
            return macro_schedule(first, start, &tokens[1..]);
        }
        if tokens.len() != 5 {
            return Err(field_count(expr, &tokens));
        }
        let parse = |index: usize, field: &field::Field| {
            let (at, text) = tokens[index];
            field.parse(text, at)
        };
        let minute = parse(0, &field::MINUTE)?;
        let hour = parse(1, &field::HOUR)?;
        let day = parse(2, &field::DAY_OF_MONTH)?;
        let month = parse(3, &field::MONTH)?;
        let weekday = parse(4, &field::DAY_OF_WEEK)?;
        Ok(Schedule {
            minutes: minute.bits,
            hours: hour.bits as u32,
            days: day.bits as u32,
            months: month.bits as u16,
            weekdays: weekday.bits as u8,
            days_restricted: day.restricted,
            weekdays_restricted: weekday.restricted,
        })
    }

    /// Whether the schedule fires on some minute of `date`.
    pub(super) fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        // Vixie cron: either restricted day field may match when both are restricted; an
        // unrestricted field has every bit set, so `&&` leaves only the restricted one.
        if self.days_restricted && self.weekdays_restricted {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// Whether month `month` (1-12) can match at all.
    pub(super) fn month_matches(&self, month: i8) -> bool {
        self.months & (1 << month) != 0
    }

    /// The first matching (hour, minute) at or after `hour:minute` on a matching day.
    pub(super) fn time_from(&self, hour: i8, minute: i8) -> Option<(i8, i8)> {
        let hours = u64::from(self.hours);
        let mut at = next_bit(hours, hour)?;
        let mut minute_from = if at == hour { minute } else { 0 };
        loop {
            if let Some(m) = next_bit(self.minutes, minute_from) {
                return Some((at, m));
            }
            at = next_bit(hours, at + 1)?;
            minute_from = 0;
        }
    }
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: i8) -> Option<i8> {
    let rest = bits.checked_shr(u32::try_from(from).ok()?)?;
    (rest != 0).then(|| from + rest.trailing_zeros() as i8)
}

/// Whitespace-separated tokens with their byte offsets.
fn tokens(expr: &str) -> Vec<(usize, &str)> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, b) in expr.bytes().enumerate().chain([(expr.len(), b' ')]) {
        match (b.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                tokens.push((s, &expr[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    tokens
}

fn macro_schedule(name: &str, start: usize, rest: &[(usize, &str)]) -> Result<Schedule, CronError> {
    let end = start + name.len();
    let Some((_, fields)) = MACROS.iter().find(|(m, _)| m.eq_ignore_ascii_case(name)) else {
        let message = format!(
            "unknown macro `{name}`; expected one of @hourly, @daily, @weekly, @monthly, @yearly"
        );
        return Err(CronError::new(start, end, message));
    };
    if let (Some(&(first, _)), Some(&(last, text))) = (rest.first(), rest.last()) {
        let message = format!("macro `{name}` takes no fields after it");
        return Err(CronError::new(first, last + text.len(), message));
    }
    Schedule::parse(fields)
        .map_err(|e| CronError::new(start, end, format!("macro `{name}`: {}", e.message)))
}

fn field_count(expr: &str, tokens: &[(usize, &str)]) -> CronError {
    let (start, end) = match (tokens.first(), tokens.last()) {
        (Some(&(start, _)), Some(&(last, text))) => (start, last + text.len()),
        _ => (0, expr.len()),
    };
    let found = tokens.len();
    let mut message = format!("expected 5 fields ({FIELD_NAMES}), found {found}");
    if found == 6 {
        message.push_str("; only 5 fields are supported, not a leading seconds field");
    }
    CronError::new(start, end, message)
}

#[cfg(test)]
mod tests {
    use jiff::civil::{Weekday, date};

    use super::*;

    /// The error for `expr` as (start, end, message).
    fn error(expr: &str) -> (usize, usize, String) {
        let e = Schedule::parse(expr).unwrap_err();
        (e.start, e.end, e.message)
    }

    fn same(a: &str, b: &str) {
        assert_eq!(
            Schedule::parse(a).unwrap(),
            Schedule::parse(b).unwrap(),
            "`{a}` vs `{b}`"
        );
    }

    #[test]
    fn errors_point_at_the_token() {
        let fields = "expected 5 fields (minute hour day-of-month month day-of-week)";
        let cases: &[(&str, usize, usize, &str)] = &[
            ("61 * * * *", 0, 2, "minute `61` is out of range 0-59"),
            ("  0 25 * * *", 4, 6, "hour `25` is out of range 0-23"),
            ("0 0 0 * *", 4, 5, "day-of-month `0` is out of range 1-31"),
            ("0 0 * 13 *", 6, 8, "month `13` is out of range 1-12"),
            ("0 0 * * 8", 8, 9, "day-of-week `8` is out of range 0-7"),
            (
                "99999999999 * * * *",
                0,
                11,
                "minute `99999999999` is out of range 0-59",
            ),
            ("*/0 * * * *", 2, 3, "step `0` must be at least 1"),
            ("0 0 * jan/x *", 10, 11, "step `x` is not a number"),
            (
                "*/60 * * * *",
                2,
                4,
                "step `60` is too large for minute; at most 59",
            ),
            (
                "0 0 * foo *",
                6,
                9,
                "month `foo` is not a number or a month name (jan-dec)",
            ),
            (
                "0 0 * * mo",
                8,
                10,
                "day-of-week `mo` is not a number or a day name (sun-sat)",
            ),
            ("x * * * *", 0, 1, "minute `x` is not a number"),
            (
                "0 0 1,,2 * *",
                4,
                8,
                "day-of-month `1,,2` has an empty list item",
            ),
            ("1- * * * *", 0, 2, "minute `1-` is incomplete"),
            ("0 0 * * 1,mon-", 10, 14, "day-of-week `mon-` is incomplete"),
            (
                "0 ? * * *",
                2,
                3,
                "`?` is allowed only in day-of-month and day-of-week, not in hour",
            ),
            ("0 0 ?,1 * *", 4, 5, "`?` in day-of-month must stand alone"),
            (
                "0 22-2 * * *",
                2,
                6,
                "hour range `22-2` goes backwards; to wrap around, write `22-23,0-2`",
            ),
            (
                "0 0 * * fri-mon",
                8,
                15,
                "day-of-week range `fri-mon` goes backwards; to wrap around, write `5-6,0-1`",
            ),
            (
                "@often",
                0,
                6,
                "unknown macro `@often`; expected one of @hourly, @daily, @weekly, @monthly, @yearly",
            ),
            (
                " @daily 5 *",
                8,
                11,
                "macro `@daily` takes no fields after it",
            ),
        ];
        for &(expr, start, end, message) in cases {
            assert_eq!(error(expr), (start, end, message.to_owned()), "`{expr}`");
        }
        assert_eq!(error("* * *"), (0, 5, format!("{fields}, found 3")));
        assert_eq!(error(""), (0, 0, format!("{fields}, found 0")));
        assert_eq!(error("   "), (0, 3, format!("{fields}, found 0")));
        let seconds = "; only 5 fields are supported, not a leading seconds field";
        assert_eq!(
            error("0 0 0 * * * "),
            (0, 11, format!("{fields}, found 6{seconds}"))
        );
        assert_eq!(
            error("0 0 0 * * * 2026"),
            (0, 16, format!("{fields}, found 7"))
        );
    }

    #[test]
    fn macros_stand_for_five_fields() {
        same("@hourly", "0 * * * *");
        same("@daily", "0 0 * * *");
        same("@midnight", "0 0 * * *");
        same("@weekly", "0 0 * * 0");
        same("@monthly", "0 0 1 * *");
        same("@yearly", "0 0 1 1 *");
        same("@annually", "0 0 1 1 *");
        same("  @Daily\t", "0 0 * * *");
    }

    #[test]
    fn names_steps_and_lists() {
        same("0 0 * JAN-mar Mon-FRI", "0 0 * 1-3 1-5");
        same("0 0 * * 7", "0 0 * * 0");
        same("0 0 * * sun", "0 0 * * 0");
        same("0 0 * * fri-sun", "0 0 * * 5,6,0");
        same("0 0 * * 5-7", "0 0 * * 0,5,6");
        same("0 0 * * 0-7", "0 0 * * 0-6");
        same("0 0 ? * *", "0 0 * * *");
        same("0 0 * * ?", "0 0 * * *");
        same("*/15 * * * *", "0,15,30,45 * * * *");
        same("10-30/10 * * * *", "10,20,30 * * * *");
        same("50/5 * * * *", "50,55 * * * *");
        same("0 0 * * */2", "0 0 * * 0,2,4,6");
        same("0 0 */10 * *", "0 0 1,11,21,31 * *");
        same("0 0 1 */3 *", "0 0 1 jan,apr,jul,oct *");
        same("05 07 * * *", "5 7 * * *");
        same("1,*/20 * * * *", "0,1,20,40 * * * *");
    }

    #[test]
    fn days_match_either_field_when_both_are_restricted() {
        let friday_13 = date(2026, 3, 13);
        let monday_13 = date(2026, 4, 13);
        let friday_17 = date(2026, 4, 17);
        let tuesday_14 = date(2026, 4, 14);
        assert_eq!(friday_13.weekday(), Weekday::Friday);
        assert_eq!(monday_13.weekday(), Weekday::Monday);
        assert_eq!(friday_17.weekday(), Weekday::Friday);
        let days = |expr: &str| {
            let s = Schedule::parse(expr).unwrap();
            [friday_13, monday_13, friday_17, tuesday_14].map(|d| s.day_matches(d))
        };
        assert_eq!(days("0 0 13 * fri"), [true, true, true, false]);
        assert_eq!(days("0 0 13 * *"), [true, true, false, false]);
        assert_eq!(days("0 0 13 * ?"), [true, true, false, false]);
        assert_eq!(days("0 0 * * fri"), [true, false, true, false]);
        assert_eq!(days("0 0 ? * fri"), [true, false, true, false]);
        // `*/2` is restricted (odd days), so Fridays are added, not intersected.
        assert_eq!(days("0 0 */2 * fri"), [true, true, true, false]);
        assert_eq!(days("0 0 13 4 fri"), [false, true, true, false]);
    }
}
