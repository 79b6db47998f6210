//! Cron triggers at run time: each tick fires the slots that came due since
//! the trigger's cursor; after downtime, `catchup` decides what missed slots run.

use super::Service;
use super::clock::rfc3339;
use super::fire::fire;
use super::load::Loaded;
use crate::ir::{Catchup, TriggerSource};
use serde_json::json;
use std::collections::HashMap;

/// At most this many missed slots run after downtime (`catchup: all`); the
/// rest are journaled as one `capped` fire.
pub const CATCHUP_CAP: usize = 100;
/// A slot that comes due this late was missed: no service ran at its time.
pub const GRACE_MS: i64 = 60_000;

/// Where each cron trigger has looked up to (Unix ms). Kept in memory between
/// ticks and written to the journal only when something fired, so an idle
/// service writes nothing.
#[derive(Debug, Default)]
pub struct Cursors(HashMap<String, i64>);

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// A slot's delay from `jitter`: the same on every service, so they agree on when it fires.
fn delay(trigger: &str, slot: i64, jitter_ms: u64) -> i64 {
    if jitter_ms == 0 {
        return 0;
    }
    let h = blake3::hash(format!("{trigger}/{slot}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(first) % jitter_ms) as i64
}

/// Fires what is due of every cron trigger at `now`.
pub fn tick(svc: &Service, cursors: &mut Cursors, now: i64) {
    for loaded in &svc.triggers {
        if let Err(e) = tick_one(svc, cursors, loaded, now) {
            svc.log.event(
                "trigger.error",
                &[("trigger", json!(loaded.trigger.name)), ("error", json!(e))],
            );
        }
    }
}

fn tick_one(svc: &Service, cursors: &mut Cursors, loaded: &Loaded, now: i64) -> Result<(), String> {
    let (
        Some((schedule, zone)),
        TriggerSource::Cron {
            catchup,
            catchup_window_ms,
            jitter_ms,
            ..
        },
    ) = (&loaded.cron, &loaded.trigger.source)
    else {
        return Ok(());
    };
    let name = &loaded.trigger.name;
    let cursor = {
        let mut journal = svc.journal();
        // Read every tick: another service on this journal may have fired
        // slots since, and a slot it fired is neither fired again nor missed.
        let stored = journal.cursor(name).map_err(|e| e.to_string())?;
        match (cursors.0.get(name), stored) {
            (Some(c), stored) => stored.map_or(*c, |s| s.max(*c)),
            (None, Some(s)) => s,
            (None, None) => {
                // A new trigger starts now: nothing before it is missed.
                journal
                    .advance_cursor(name, now)
                    .map_err(|e| e.to_string())?;
                now
            }
        }
    };
    if now <= cursor {
        cursors.0.insert(name.clone(), cursor);
        return Ok(());
    }
    let (slots, capped) = schedule.fires_between(ts(cursor), ts(now), zone, CATCHUP_CAP);
    let slots: Vec<i64> = slots.iter().map(|t| t.as_millisecond()).collect();
    // Slots whose jittered time is still ahead wait for a later tick.
    let due_at = |slot: i64| slot + delay(name, slot, *jitter_ms);
    let waiting = slots.iter().copied().filter(|s| due_at(*s) > now).min();
    let due: Vec<i64> = slots
        .iter()
        .copied()
        .filter(|s| due_at(*s) <= now)
        .collect();
    let next_cursor = waiting.map_or(now, |w| w - 1);
    if due.is_empty() {
        cursors.0.insert(name.clone(), next_cursor.max(cursor));
        return Ok(());
    }
    let (missed, on_time): (Vec<i64>, Vec<i64>) =
        due.iter().partition(|s| now - due_at(**s) > GRACE_MS);
    let window_start = now - *catchup_window_ms as i64;
    let run_missed: Vec<i64> = match catchup {
        Catchup::None => Vec::new(),
        Catchup::Latest => missed.last().copied().into_iter().collect(),
        Catchup::All => missed
            .iter()
            .copied()
            .filter(|s| *s >= window_start)
            .collect(),
    };
    let not_run = missed.len() - run_missed.len();
    if not_run > 0 || capped {
        record_missed(svc, loaded, &missed, &run_missed, capped)?;
    }
    for slot in run_missed.iter().chain(on_time.iter()) {
        fire_slot(svc, loaded, zone, *slot)?;
    }
    svc.journal()
        .advance_cursor(name, next_cursor)
        .map_err(|e| e.to_string())?;
    cursors.0.insert(name.clone(), next_cursor.max(cursor));
    Ok(())
}

/// Journals the missed slots that start no run as one fire, with the counts.
fn record_missed(
    svc: &Service,
    loaded: &Loaded,
    missed: &[i64],
    ran: &[i64],
    capped: bool,
) -> Result<(), String> {
    let (Some(first), Some(last)) = (missed.first(), missed.last()) else {
        return Ok(());
    };
    let name = &loaded.trigger.name;
    let skipped = missed.len() - ran.len();
    let outcome = if capped { "capped" } else { "missed" };
    let fire = crate::journal::Fire {
        trigger: name.clone(),
        key: format!("missed:{}..{}", rfc3339(*first), rfc3339(*last)),
        data: json!({
            "missed": missed.len(),
            "ran": ran.len(),
            "not_run": skipped,
            "more_than_cap": capped,
            "cap": CATCHUP_CAP,
            "first": rfc3339(*first),
            "last": rfc3339(*last),
        }),
    };
    svc.journal()
        .record_fire(&fire, outcome)
        .map_err(|e| e.to_string())?;
    svc.log.event(
        "trigger.missed",
        &[
            ("trigger", json!(name)),
            ("missed", json!(missed.len())),
            ("ran", json!(ran.len())),
            ("capped", json!(capped)),
        ],
    );
    Ok(())
}

fn fire_slot(
    svc: &Service,
    loaded: &Loaded,
    zone: &jiff::tz::TimeZone,
    slot: i64,
) -> Result<(), String> {
    let key = rfc3339(slot);
    let local = ts(slot).to_zoned(zone.clone());
    let event = json!({ "scheduled_at": local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string() });
    let outcome = fire(svc, loaded, &key, event)?;
    svc.report_fire(loaded, &key, &outcome);
    Ok(())
}
