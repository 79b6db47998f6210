//! Rate limits per model and the price of a call.

use std::collections::VecDeque;

/// The window rate limits are counted over.
const WINDOW_MS: i64 = 60_000;

/// Requests and tokens per minute for one model, shared by every step of
/// the process. Calls reserve a start time when they are launched, so
/// concurrent steps queue instead of all waking at once.
#[derive(Debug, Default)]
pub struct RateWindow {
    /// Requests per minute allowed.
    pub requests: Option<u64>,
    /// Tokens per minute allowed.
    pub tokens: Option<u64>,
    /// Reserved calls: (start time in ms, estimated tokens), in time order.
    calls: VecDeque<(i64, u64)>,
}

impl RateWindow {
    /// A window with these limits.
    pub fn new(requests: Option<u64>, tokens: Option<u64>) -> RateWindow {
        RateWindow {
            requests,
            tokens,
            calls: VecDeque::new(),
        }
    }

    /// Reserves a call of about `tokens` tokens at the earliest time from
    /// `now` that keeps both limits; returns how long to wait, in ms. A call
    /// larger than the token limit on its own waits for an empty window.
    pub fn reserve(&mut self, now: i64, tokens: u64) -> u64 {
        if self.requests.is_none() && self.tokens.is_none() {
            return 0;
        }
        while self
            .calls
            .front()
            .is_some_and(|(t, _)| *t <= now - WINDOW_MS)
        {
            self.calls.pop_front();
        }
        let mut at = now;
        loop {
            let inside: Vec<&(i64, u64)> = self
                .calls
                .iter()
                .filter(|(t, _)| *t > at - WINDOW_MS)
                .collect();
            let count_ok = self.requests.is_none_or(|r| (inside.len() as u64) < r);
            let used: u64 = inside.iter().map(|(_, n)| n).sum();
            let tokens_ok = self
                .tokens
                .is_none_or(|cap| inside.is_empty() || used + tokens <= cap);
            if count_ok && tokens_ok {
                break;
            }
            // Move to when the oldest call inside the window leaves it.
            at = inside[0].0 + WINDOW_MS;
        }
        let pos = self.calls.partition_point(|(t, _)| *t <= at);
        self.calls.insert(pos, (at, tokens));
        (at - now) as u64
    }
}

/// The price of a call in USD, from prices per million tokens.
pub fn cost(
    tokens_in: u64,
    tokens_out: u64,
    input_price: Option<f64>,
    output_price: Option<f64>,
) -> f64 {
    (tokens_in as f64 * input_price.unwrap_or(0.0)
        + tokens_out as f64 * output_price.unwrap_or(0.0))
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_queue_calls() {
        let mut w = RateWindow::new(Some(2), None);
        assert_eq!(w.reserve(0, 1), 0);
        assert_eq!(w.reserve(10, 1), 0);
        // The third waits until the first leaves the window.
        assert_eq!(w.reserve(20, 1), 60_000 - 20);
        // The fourth waits for the second.
        assert_eq!(w.reserve(30, 1), 60_010 - 30);
        assert_eq!(w.reserve(200_000, 1), 0);
    }

    #[test]
    fn tokens_per_minute_queue_calls() {
        let mut w = RateWindow::new(None, Some(100));
        assert_eq!(w.reserve(0, 60), 0);
        assert_eq!(w.reserve(1, 30), 0);
        assert_eq!(w.reserve(2, 30), 60_000 - 2);
        // Too big for the limit alone: waits for an empty window, then goes.
        let mut w = RateWindow::new(None, Some(10));
        assert_eq!(w.reserve(0, 50), 0);
        assert_eq!(w.reserve(5, 50), 60_000 - 5);
    }

    #[test]
    fn unlimited_never_waits() {
        let mut w = RateWindow::default();
        for i in 0..100 {
            assert_eq!(w.reserve(i, 1_000_000), 0);
        }
    }

    #[test]
    fn prices_are_per_million() {
        assert!((cost(1_000_000, 500_000, Some(0.15), Some(0.6)) - 0.45).abs() < 1e-12);
        assert_eq!(cost(10, 10, None, None), 0.0);
    }
}
