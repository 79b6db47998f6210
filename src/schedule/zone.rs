//! Time zones by IANA name, with a suggestion when a name is close to a real one.

use jiff::tz::TimeZone;

/// Looks up an IANA time zone name ("UTC", "Europe/Berlin"); the error says so and suggests close names when possible.
///
/// Names must be spelled exactly, as the tz database does (`utc` and `europe/berlin` are
/// refused with a suggestion), so a schedule's zone reads the same in every log and file.
/// The system's zoneinfo is used when there is one, else a copy built into flowc.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    let db = jiff::tz::db();
    if let Ok(tz) = db.get(name)
        && tz.iana_name() == Some(name)
    {
        return Ok(tz);
    }
    let mut names: Vec<String> = db.available().map(|n| n.as_str().to_owned()).collect();
    names.sort();
    Err(match suggest(name, &names) {
        Some(close) => format!("unknown time zone `{name}`; did you mean `{close}`?"),
        None => format!(
            "unknown time zone `{name}`; expected an IANA name such as `Europe/Berlin` or `UTC`"
        ),
    })
}

/// The name `name` most likely meant: the same but for case or spaces, the same city, or a
/// close spelling.
fn suggest<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    let wanted = name.trim().replace(' ', "_").to_ascii_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let exact = names.iter().find(|n| n.to_ascii_lowercase() == wanted);
    let city = || {
        names.iter().find(|n| {
            n.rsplit_once('/')
                .is_some_and(|(_, city)| city.to_ascii_lowercase() == wanted)
        })
    };
    if let Some(found) = exact.or_else(city) {
        return Some(found);
    }
    let mut best: Option<(f64, &str)> = None;
    for candidate in names {
        let score = strsim::jaro_winkler(&wanted, &candidate.to_ascii_lowercase());
        if score > 0.9 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}
