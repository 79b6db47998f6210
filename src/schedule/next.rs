//! Fire instants: walking matching civil minutes forward and mapping each to one instant.

use std::collections::VecDeque;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::cron::Schedule;

/// How far one search looks: the longest gap between fires of a schedule that fires at all
/// is 29 February 2096 to 29 February 2104.
const HORIZON_YEARS: i16 = 8;

impl Schedule {
    /// The first fire instant strictly after `after`, in zone `tz` (None if the schedule never fires).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.fires(after, tz).next()
    }

    /// The newest `cap` fire instants in (from, to], oldest first; true when the window held more.
    pub fn fires_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        tz: &TimeZone,
        cap: usize,
    ) -> (Vec<Timestamp>, bool) {
        if to <= from {
            return (Vec::new(), false);
        }
        if cap == 0 {
            return (
                Vec::new(),
                self.next_after(from, tz).is_some_and(|at| at <= to),
            );
        }
        // Look back from `to` over a window that doubles until it holds more than `cap` fires
        // or reaches `from`: the work grows with `cap`, not with the length of an outage.
        let mut span = SignedDuration::from_hours(1);
        loop {
            let start = to
                .checked_sub(span)
                .ok()
                .filter(|s| *s > from)
                .unwrap_or(from);
            let mut newest = VecDeque::with_capacity(cap.saturating_add(1).min(1024));
            let mut more = false;
            for at in self.fires(start, tz).take_while(|at| *at <= to) {
                newest.push_back(at);
                if newest.len() > cap {
                    newest.pop_front();
                    more = true;
                }
            }
            if more || start == from {
                return (newest.into(), more);
            }
            span = span.checked_mul(2).unwrap_or(SignedDuration::MAX);
        }
    }

    /// The fires strictly after `after`, oldest first.
    fn fires<'a>(&'a self, after: Timestamp, tz: &'a TimeZone) -> Fires<'a> {
        let now = tz.to_datetime(after);
        let cursor = now.date().at(now.hour(), now.minute(), 0, 0);
        Fires {
            schedule: self,
            tz,
            cursor: Some(cursor),
            last: after,
        }
    }

    /// The first matching civil minute at or after `from`, within the horizon.
    fn next_match(&self, from: DateTime) -> Option<DateTime> {
        let limit = from
            .date()
            .checked_add(HORIZON_YEARS.years())
            .unwrap_or(Date::MAX);
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        while date <= limit {
            if !self.month_matches(date.month()) {
                date = date.first_of_month().checked_add(1.month()).ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some((h, m)) = self.time_from(hour, minute)
            {
                return Some(date.at(h, m, 0, 0));
            }
            date = date.tomorrow().ok()?;
            (hour, minute) = (0, 0);
        }
        None
    }
}

/// Walks matching civil minutes and yields each new instant once.
struct Fires<'a> {
    schedule: &'a Schedule,
    tz: &'a TimeZone,
    /// The next civil minute to consider; `None` at the end of time.
    cursor: Option<DateTime>,
    /// The latest instant yielded, or the start: only later instants are new.
    last: Timestamp,
}

impl Iterator for Fires<'_> {
    type Item = Timestamp;

    fn next(&mut self) -> Option<Timestamp> {
        loop {
            let civil = self.schedule.next_match(self.cursor?)?;
            self.cursor = civil.checked_add(1.minute()).ok();
            // Several minutes of a gap share the transition instant; a repeated minute maps
            // to its first occurrence, already behind `last` once the clock has gone back.
            if let Some(at) = fire_instant(civil, self.tz)
                && at > self.last
            {
                self.last = at;
                return Some(at);
            }
        }
    }
}

/// The instant a civil minute fires at: itself, its first occurrence when the clock shows it
/// twice, or the end of the gap when the clock skips it.
fn fire_instant(civil: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, a skipped minute lands before the transition.
            let early = after.to_timestamp(civil).ok()?;
            tz.following(early)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}
