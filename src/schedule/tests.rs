//! Fire instants across daylight-saving transitions, checked against hand-worked UTC times.

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};

use super::{Schedule, zone};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn tz(name: &str) -> TimeZone {
    zone(name).unwrap()
}

/// The next fire of `expr` after `after`, as RFC 3339 UTC.
fn next(expr: &str, after: &str, zone: &str) -> Option<String> {
    let schedule = Schedule::parse(expr).unwrap();
    schedule
        .next_after(at(after), &tz(zone))
        .map(|t| t.to_string())
}

/// Every fire of `expr` in (from, to].
fn all(expr: &str, from: &str, to: &str, zone: &str) -> Vec<Timestamp> {
    let schedule = Schedule::parse(expr).unwrap();
    let (fires, more) = schedule.fires_between(at(from), at(to), &tz(zone), 100_000);
    assert!(!more);
    fires
}

fn strings(fires: &[Timestamp]) -> Vec<String> {
    fires.iter().map(|t| t.to_string()).collect()
}

/// The civil dates of `fires` in `zone`, one per fire.
fn local_days(fires: &[Timestamp], zone: &str) -> Vec<String> {
    let tz = tz(zone);
    fires
        .iter()
        .map(|t| tz.to_datetime(*t).date().to_string())
        .collect()
}

#[test]
fn next_after_in_utc() {
    let cases = [
        (
            "*/15 * * * *",
            "2026-01-01T00:07:00Z",
            "2026-01-01T00:15:00Z",
        ),
        (
            "*/15 * * * *",
            "2026-01-01T00:15:00Z",
            "2026-01-01T00:30:00Z",
        ),
        (
            "*/15 * * * *",
            "2026-01-01T00:14:59.5Z",
            "2026-01-01T00:15:00Z",
        ),
        ("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
        ("0 0 * * *", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        (
            "30 4 * * mon",
            "2026-01-01T00:00:00Z",
            "2026-01-05T04:30:00Z",
        ),
        ("0 12 1 * *", "2026-01-01T13:00:00Z", "2026-02-01T12:00:00Z"),
        (
            "59 23 31 12 *",
            "2026-01-01T00:00:00Z",
            "2026-12-31T23:59:00Z",
        ),
        ("0 0 1 1 *", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
        (
            "0 9 13 * fri",
            "2026-03-01T00:00:00Z",
            "2026-03-06T09:00:00Z",
        ),
        ("@hourly", "2026-06-30T23:30:00Z", "2026-07-01T00:00:00Z"),
    ];
    for (expr, after, want) in cases {
        assert_eq!(
            next(expr, after, "UTC").as_deref(),
            Some(want),
            "`{expr}` after {after}"
        );
    }
}

#[test]
fn leap_days_and_impossible_dates() {
    let leap = "0 0 29 2 *";
    assert_eq!(
        next(leap, "2026-03-01T00:00:00Z", "UTC").as_deref(),
        Some("2028-02-29T00:00:00Z")
    );
    // 2100 is not a leap year: eight years between fires, still inside the horizon.
    assert_eq!(
        next(leap, "2096-03-01T00:00:00Z", "UTC").as_deref(),
        Some("2104-02-29T00:00:00Z")
    );
    assert_eq!(next("0 0 31 2 *", "2026-01-01T00:00:00Z", "UTC"), None);
    assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z", "UTC"), None);
    assert_eq!(
        next("0 0 31 apr,jun,sep,nov *", "2026-01-01T00:00:00Z", "UTC"),
        None
    );
    // With a restricted day of week the impossible day is only one of two ways to match.
    let either = next("0 0 31 2 mon", "2026-01-01T00:00:00Z", "UTC");
    assert_eq!(either.as_deref(), Some("2026-02-02T00:00:00Z"));
}

#[test]
fn berlin_spring_forward_fires_at_the_transition() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 never shows.
    let expr = "30 2 * * *";
    let berlin = "Europe/Berlin";
    assert_eq!(
        next(expr, "2026-03-28T12:00:00Z", berlin).as_deref(),
        Some("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        next(expr, "2026-03-29T01:00:00Z", berlin).as_deref(),
        Some("2026-03-30T00:30:00Z")
    );
    let week = all(expr, "2026-03-25T23:00:00Z", "2026-04-01T22:00:00Z", berlin);
    assert_eq!(
        strings(&week),
        [
            "2026-03-26T01:30:00Z",
            "2026-03-27T01:30:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z",
            "2026-04-01T00:30:00Z",
        ]
    );
    let days = local_days(&week, berlin);
    assert_eq!(days[3], "2026-03-29");
    assert!(
        days.windows(2).all(|w| w[0] < w[1]),
        "one fire per day: {days:?}"
    );
}

#[test]
fn berlin_fall_back_fires_at_the_first_occurrence() {
    // 2026-10-25 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:30 shows twice.
    let expr = "30 2 * * *";
    let berlin = "Europe/Berlin";
    assert_eq!(
        next(expr, "2026-10-24T12:00:00Z", berlin).as_deref(),
        Some("2026-10-25T00:30:00Z")
    );
    // After the first 02:30 the second one (01:30 UTC) is not a fire.
    assert_eq!(
        next(expr, "2026-10-25T00:30:00Z", berlin).as_deref(),
        Some("2026-10-26T01:30:00Z")
    );
    let week = all(expr, "2026-10-21T22:00:00Z", "2026-10-28T23:00:00Z", berlin);
    assert_eq!(
        strings(&week),
        [
            "2026-10-22T00:30:00Z",
            "2026-10-23T00:30:00Z",
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-27T01:30:00Z",
            "2026-10-28T01:30:00Z",
        ]
    );
    let days = local_days(&week, berlin);
    assert!(
        days.windows(2).all(|w| w[0] < w[1]),
        "one fire per day: {days:?}"
    );
}

#[test]
fn berlin_quarter_hours_across_both_transitions() {
    let berlin = "Europe/Berlin";
    // Fall-back day: 00:00 CEST (22:00 UTC the day before) to 24:00 CET (23:00 UTC), 25 hours.
    // Each of the 96 civil quarters fires once; the repeated 02:00-02:45 only as CEST.
    let fall = all(
        "*/15 * * * *",
        "2026-10-24T21:59:59Z",
        "2026-10-25T22:59:59Z",
        berlin,
    );
    assert_eq!(fall.len(), 96);
    let repeated = all(
        "*/15 2 * * *",
        "2026-10-24T21:59:59Z",
        "2026-10-25T22:59:59Z",
        berlin,
    );
    let first = [
        "2026-10-25T00:00:00Z",
        "2026-10-25T00:15:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T00:45:00Z",
    ];
    assert_eq!(strings(&repeated), first);
    // Spring-forward day: 00:00 CET (23:00 UTC the day before) to 24:00 CEST (22:00 UTC), 23
    // hours. Of the 96 civil quarters, 02:00, 02:15, 02:30 and 02:45 do not exist and fire at
    // the transition (01:00 UTC), the instant 03:00 fires at too: five quarters, one fire, so
    // 96 - 4 = 92.
    let spring = all(
        "*/15 * * * *",
        "2026-03-28T22:59:59Z",
        "2026-03-29T21:59:59Z",
        berlin,
    );
    assert_eq!(spring.len(), 92);
    let gap = all(
        "*/15 2 * * *",
        "2026-03-28T22:59:59Z",
        "2026-03-29T21:59:59Z",
        berlin,
    );
    assert_eq!(strings(&gap), ["2026-03-29T01:00:00Z"]);
    // 02:00, 02:30 and 03:00 share the transition instant; 03:30 CEST is 01:30 UTC.
    let around = all(
        "0,30 2,3 * * *",
        "2026-03-28T22:59:59Z",
        "2026-03-29T21:59:59Z",
        berlin,
    );
    assert_eq!(
        strings(&around),
        ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"]
    );
}

#[test]
fn next_after_from_inside_a_transition() {
    let berlin = "Europe/Berlin";
    let quarters = "*/15 * * * *";
    // 02:10 CET, the second time round: 02:15-02:45 fired as CEST, so 03:00 CET is next.
    assert_eq!(
        next(quarters, "2026-10-25T01:10:00Z", berlin).as_deref(),
        Some("2026-10-25T02:00:00Z")
    );
    // 02:50 CEST, the first time round: 03:00 CEST does not exist yet; 02:00 CET repeats
    // minutes already fired, so 03:00 CET is next.
    assert_eq!(
        next(quarters, "2026-10-25T00:50:00Z", berlin).as_deref(),
        Some("2026-10-25T02:00:00Z")
    );
    assert_eq!(
        next(quarters, "2026-03-29T00:59:30Z", berlin).as_deref(),
        Some("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        next(quarters, "2026-03-29T01:00:00Z", berlin).as_deref(),
        Some("2026-03-29T01:15:00Z")
    );
}

#[test]
fn new_york_transitions() {
    let ny = "America/New_York";
    // 2026-03-08 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    let spring = all(
        "30 2 * * *",
        "2026-03-05T05:00:00Z",
        "2026-03-12T04:00:00Z",
        ny,
    );
    assert_eq!(
        strings(&spring),
        [
            "2026-03-05T07:30:00Z",
            "2026-03-06T07:30:00Z",
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-10T06:30:00Z",
            "2026-03-11T06:30:00Z",
        ]
    );
    // 2026-11-01 02:00 EDT falls back to 01:00 EST at 06:00 UTC; 01:30 shows twice.
    let fall = all(
        "30 1 * * *",
        "2026-10-29T04:00:00Z",
        "2026-11-05T05:00:00Z",
        ny,
    );
    assert_eq!(
        strings(&fall),
        [
            "2026-10-29T05:30:00Z",
            "2026-10-30T05:30:00Z",
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-03T06:30:00Z",
            "2026-11-04T06:30:00Z",
        ]
    );
    // The same counts as Berlin: 96 quarters on the 25-hour day, 96 - 4 on the 23-hour day.
    let long_day = all(
        "*/15 * * * *",
        "2026-11-01T03:59:59Z",
        "2026-11-02T04:59:59Z",
        ny,
    );
    assert_eq!(long_day.len(), 96);
    let short_day = all(
        "*/15 * * * *",
        "2026-03-08T04:59:59Z",
        "2026-03-09T03:59:59Z",
        ny,
    );
    assert_eq!(short_day.len(), 92);
}

#[test]
fn next_after_agrees_with_fires_between() {
    // Whatever instant a search starts from, it finds the first fire of the whole list.
    let windows = [
        (
            "Europe/Berlin",
            "2026-03-28T20:00:00Z",
            "2026-03-29T04:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2026-10-24T20:00:00Z",
            "2026-10-25T04:00:00Z",
        ),
        (
            "America/New_York",
            "2026-11-01T03:00:00Z",
            "2026-11-01T09:00:00Z",
        ),
    ];
    for expr in [
        "*/15 * * * *",
        "*/7 1-3 * * *",
        "30 2 * * *",
        "0,30 2,3 * * *",
    ] {
        let schedule = Schedule::parse(expr).unwrap();
        for (name, from, to) in windows {
            let zone = tz(name);
            let (fires, _) = schedule.fires_between(at(from), at(to), &zone, 10_000);
            assert!(fires.windows(2).all(|w| w[0] < w[1]), "`{expr}` in {name}");
            let mut t = at(from);
            while t < at(to) {
                let want = fires.iter().find(|f| **f > t).copied();
                let got = schedule.next_after(t, &zone).filter(|f| *f <= at(to));
                assert_eq!(got, want, "`{expr}` in {name} after {t}");
                t += SignedDuration::from_secs(7 * 60 + 13);
            }
        }
    }
}

#[test]
fn fires_between_keeps_the_newest() {
    let utc = tz("UTC");
    let quarters = Schedule::parse("*/15 * * * *").unwrap();
    let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-01-01T02:00:00Z"));
    // (from, to] excludes 00:00 and includes 02:00: eight fires.
    let (fires, more) = quarters.fires_between(from, to, &utc, 3);
    assert_eq!(
        strings(&fires),
        [
            "2026-01-01T01:30:00Z",
            "2026-01-01T01:45:00Z",
            "2026-01-01T02:00:00Z"
        ]
    );
    assert!(more);
    let (fires, more) = quarters.fires_between(from, to, &utc, 8);
    assert_eq!((fires.len(), more), (8, false));
    assert_eq!(fires[0].to_string(), "2026-01-01T00:15:00Z");
    assert_eq!(quarters.fires_between(from, to, &utc, 100).0.len(), 8);
    assert_eq!(quarters.fires_between(from, to, &utc, 0), (vec![], true));
    assert_eq!(quarters.fires_between(to, from, &utc, 5), (vec![], false));
    assert_eq!(quarters.fires_between(to, to, &utc, 5), (vec![], false));
    let quiet = at("2026-01-01T00:01:00Z");
    assert_eq!(
        quarters.fires_between(from, quiet, &utc, 0),
        (vec![], false)
    );
}

#[test]
fn fires_between_a_long_outage_is_quick() {
    // Ten years of every minute: only the newest fires are walked, not five million.
    let every = Schedule::parse("* * * * *").unwrap();
    let (from, to) = (at("2016-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"));
    let (fires, more) = every.fires_between(from, to, &tz("Europe/Berlin"), 2);
    assert_eq!(
        strings(&fires),
        ["2025-12-31T23:59:00Z", "2026-01-01T00:00:00Z"]
    );
    assert!(more);
    // Leap days only: the window grows until it holds them.
    let leap = Schedule::parse("0 0 29 2 *").unwrap();
    let (fires, more) = leap.fires_between(from, to, &tz("UTC"), 2);
    assert_eq!(
        strings(&fires),
        ["2020-02-29T00:00:00Z", "2024-02-29T00:00:00Z"]
    );
    assert!(more);
}

#[test]
fn zones_by_exact_name() {
    assert_eq!(zone("UTC").unwrap().iana_name(), Some("UTC"));
    assert_eq!(tz("Europe/Berlin").iana_name(), Some("Europe/Berlin"));
    assert_eq!(tz("Etc/UTC").iana_name(), Some("Etc/UTC"));
    let unknown =
        "unknown time zone `Mars/Olympus`; expected an IANA name such as `Europe/Berlin` or `UTC`";
    assert_eq!(zone("Mars/Olympus").unwrap_err(), unknown);
    let cases = [
        ("utc", "UTC"),
        ("europe/berlin", "Europe/Berlin"),
        ("Berlin", "Europe/Berlin"),
        ("Europe/Berln", "Europe/Berlin"),
        ("new york", "America/New_York"),
    ];
    for (name, close) in cases {
        let want = format!("unknown time zone `{name}`; did you mean `{close}`?");
        assert_eq!(zone(name).unwrap_err(), want);
    }
}

#[test]
fn the_bundled_database_knows_zones() {
    // A machine without tzdata falls back to this copy.
    let berlin = TimeZoneDatabase::bundled().get("Europe/Berlin").unwrap();
    let schedule = Schedule::parse("30 2 * * *").unwrap();
    let fire = schedule.next_after(at("2026-03-28T12:00:00Z"), &berlin);
    assert_eq!(fire, Some(at("2026-03-29T01:00:00Z")));
}
