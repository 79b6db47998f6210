//! One cron field: a comma list of `*`, values, ranges and steps, parsed into a bitset.

use super::cron::CronError;

/// What one of the five fields accepts.
#[derive(Debug)]
pub(super) struct Field {
    /// The name in messages: `minute`, `day-of-week`.
    pub name: &'static str,
    /// The smallest value.
    pub min: u8,
    /// The largest value written literally (7 in day of week).
    pub max: u8,
    /// The largest value that `*` and an open-ended `a/n` reach (6 in day of week).
    pub top: u8,
    /// Names for values from `min` on, matched case-insensitively.
    pub names: &'static [&'static str],
    /// What the names are, for messages: `a month name (jan-dec)`.
    pub names_hint: &'static str,
    /// Whether `?` is allowed, meaning `*`.
    pub question: bool,
}

pub(super) const MINUTE: Field = Field::numeric("minute", 0, 59);
pub(super) const HOUR: Field = Field::numeric("hour", 0, 23);
pub(super) const DAY_OF_MONTH: Field = Field {
    question: true,
    ..Field::numeric("day-of-month", 1, 31)
};
pub(super) const MONTH: Field = Field {
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    names_hint: "a month name (jan-dec)",
    ..Field::numeric("month", 1, 12)
};
pub(super) const DAY_OF_WEEK: Field = Field {
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    names_hint: "a day name (sun-sat)",
    question: true,
    ..Field::numeric("day-of-week", 0, 6)
};

/// A parsed field: bit `n` set when value `n` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bits {
    /// Bit `n` for value `n`; 7 in day of week is folded onto 0.
    pub bits: u64,
    /// False when the field was exactly `*` or `?`.
    pub restricted: bool,
}

impl Field {
    const fn numeric(name: &'static str, min: u8, max: u8) -> Field {
        Field {
            name,
            min,
            max,
            top: max,
            names: &[],
            names_hint: "",
            question: false,
        }
    }

    /// Parses the field text found at byte `at` of the expression.
    pub fn parse(&self, text: &str, at: usize) -> Result<Bits, CronError> {
        if text == "*" || (text == "?" && self.question) {
            return Ok(Bits {
                bits: self.span_bits(self.min, self.top, 1),
                restricted: false,
            });
        }
        let mut bits = 0;
        let mut offset = at;
        for item in text.split(',') {
            if item.is_empty() {
                let message = format!("{} `{text}` has an empty list item", self.name);
                return Err(CronError::new(at, at + text.len(), message));
            }
            bits |= self.item(item, offset)?;
            offset += item.len() + 1;
        }
        Ok(Bits {
            bits,
            restricted: true,
        })
    }

    /// One list item: `*`, `a`, `a-b`, each with an optional `/n`.
    fn item(&self, item: &str, at: usize) -> Result<u64, CronError> {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some((step, at + base.len() + 1))),
            None => (item, None),
        };
        let (low, high) = if base == "*" {
            (self.min, self.top)
        } else if base == "?" {
            let message = if self.question {
                format!("`?` in {} must stand alone", self.name)
            } else {
                format!(
                    "`?` is allowed only in day-of-month and day-of-week, not in {}",
                    self.name
                )
            };
            return Err(CronError::new(at, at + base.len(), message));
        } else if let Some((low, high)) = base.split_once('-') {
            let low_value = self.value(low, at, item, at)?;
            let mut high_value = self.value(high, at + low.len() + 1, item, at)?;
            if high_value == self.min && low_value > self.min && self.max > self.top {
                // `fri-sun`: Sunday as the end of a range is 7.
                high_value = self.max;
            }
            if low_value > high_value {
                return Err(self.backwards(base, at, low_value, high_value));
            }
            (low_value, high_value)
        } else {
            let value = self.value(base, at, item, at)?;
            // `a/n` runs from `a` to the top of the field.
            (
                value,
                if step.is_some() {
                    self.top.max(value)
                } else {
                    value
                },
            )
        };
        let step = match step {
            Some((text, step_at)) => self.step(text, step_at)?,
            None => 1,
        };
        Ok(self.span_bits(low, high, step))
    }

    /// The bits of `low..=high` by `step`, with 7 in day of week folded onto Sunday.
    fn span_bits(&self, low: u8, high: u8, step: u8) -> u64 {
        let mut bits = 0u64;
        for value in (low..=high).step_by(usize::from(step)) {
            let value = if value > self.top { self.min } else { value };
            bits |= 1 << value;
        }
        bits
    }

    /// A step after `/`: from 1 to the width of the field.
    fn step(&self, text: &str, at: usize) -> Result<u8, CronError> {
        let end = at + text.len();
        let widest = self.top - self.min;
        match number(text) {
            None => Err(CronError::new(
                at,
                end,
                format!("step `{text}` is not a number"),
            )),
            Some(0) => Err(CronError::new(
                at,
                end,
                "step `0` must be at least 1".to_owned(),
            )),
            Some(n) if n > u32::from(widest) => {
                let message = format!(
                    "step `{text}` is too large for {}; at most {widest}",
                    self.name
                );
                Err(CronError::new(at, end, message))
            }
            Some(n) => Ok(n as u8),
        }
    }

    /// A number or a name, checked against the field's range.
    fn value(&self, text: &str, at: usize, item: &str, item_at: usize) -> Result<u8, CronError> {
        let end = at + text.len();
        if text.is_empty() {
            let message = format!("{} `{item}` is incomplete", self.name);
            return Err(CronError::new(item_at, item_at + item.len(), message));
        }
        if let Some(index) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.min + index as u8);
        }
        let Some(n) = number(text) else {
            let message = if self.names.is_empty() {
                format!("{} `{text}` is not a number", self.name)
            } else {
                format!(
                    "{} `{text}` is not a number or {}",
                    self.name, self.names_hint
                )
            };
            return Err(CronError::new(at, end, message));
        };
        if n < u32::from(self.min) || n > u32::from(self.max) {
            let message = format!(
                "{} `{text}` is out of range {}-{}",
                self.name, self.min, self.max
            );
            return Err(CronError::new(at, end, message));
        }
        Ok(n as u8)
    }

    /// The error for `a-b` with `a` after `b`, suggesting the two ranges meant.
    fn backwards(&self, base: &str, at: usize, low: u8, high: u8) -> CronError {
        let message = format!(
            "{} range `{base}` goes backwards; to wrap around, write `{low}-{},{}-{high}`",
            self.name, self.top, self.min
        );
        CronError::new(at, at + base.len(), message)
    }
}

/// Decimal digits only; `None` for anything else, saturating so a long number is out of range.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u32, |n, b| {
        n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}
