//! Cron schedules: parsing five-field expressions and finding their fire instants in a time zone.
//!
//! No cron crate is used: each has had daylight-saving bugs, so the semantics are defined
//! here and tested against real transitions.
//!
//! # Expressions
//!
//! Five fields separated by whitespace: minute (0-59), hour (0-23), day of month (1-31),
//! month (1-12 or `jan`-`dec`) and day of week (0-7 or `sun`-`sat`, 0 and 7 both Sunday).
//! A field is a comma list of items; an item is `*`, a value `a`, a range `a-b`, or one of
//! those with a step: `*/n`, `a-b/n`, `a/n` (from `a` to the field's maximum). Names are
//! case-insensitive. `?` means `*` in day of month and day of week. In day of week, `*` and
//! `a/n` run over 0-6, and a range may end at `sun` (`fri-sun`). A backwards range (`22-2`)
//! is an error, not a wrap-around. A sixth (seconds) field is an error.
//!
//! Macros: `@hourly` (`0 * * * *`), `@daily` and `@midnight` (`0 0 * * *`), `@weekly`
//! (`0 0 * * 0`), `@monthly` (`0 0 1 * *`), `@yearly` and `@annually` (`0 0 1 1 *`).
//!
//! Days follow Vixie cron's documented rule: when day of month and day of week are both
//! restricted, a day matches if either matches; otherwise only the restricted one counts.
//! A field is unrestricted only when it is exactly `*` or `?`; so `*/2` is restricted
//! (Vixie cron's code tests the first character and would call it unrestricted).
//!
//! # Fire instants
//!
//! A schedule is a set of civil (wall-clock) minutes in a zone, and each matching civil
//! minute fires exactly once, at one instant:
//!
//! - a minute that exists once fires at that instant;
//! - a minute in a gap (spring forward: it never shows on the clock) fires at the
//!   transition, the first instant after the gap: Europe/Berlin 2026-03-29 02:30 fires at
//!   03:00 CEST (01:00 UTC);
//! - a minute that occurs twice (fall back) fires at its first occurrence only, the
//!   earlier instant: Europe/Berlin 2026-10-25 02:30 fires at 02:30 CEST (00:30 UTC).
//!
//! Fires are instants, so minutes that land on the same instant fire once: every matching
//! minute of a gap, and the minute just after it, collapse into one fire at the transition.
//!
//! Architecture invariant: the map from civil minute to instant never goes backwards, so
//! the fires after any instant are found by walking matching civil minutes forward from
//! that instant's wall-clock minute and skipping instants not later than the last one.
//! Searches stop after 8 years, the longest gap between fires of a schedule that fires at
//! all (29 February across 2100, which is not a leap year); beyond that `None` means the
//! schedule never fires (`0 0 31 2 *`).

mod cron;
mod field;
mod next;
mod zone;

#[cfg(test)]
mod tests;

pub use cron::{CronError, Schedule};
pub use zone::zone;
