//! Small charts drawn on the server as SVG: lines over days (a success rate per skill) and bars over days (spend per model).

use super::html::esc;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
const RIGHT: f64 = 12.0;
/// Colours of the series, in order (then again).
const COLOURS: &[&str] = &[
    "#175cd3", "#1f7a3f", "#b25e09", "#b42318", "#6941c6", "#0e7090",
];

/// One named series of (day, value) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name (the legend).
    pub name: String,
    /// Its points: days since 1970-01-01, and values.
    pub points: Vec<(i64, f64)>,
}

fn day_label(day: i64) -> String {
    jiff::Timestamp::from_second(day * 86_400)
        .map(|t| t.strftime("%m-%d").to_string())
        .unwrap_or_default()
}

struct Frame {
    first: i64,
    last: i64,
    top: f64,
}

impl Frame {
    fn x(&self, day: i64) -> f64 {
        let span = (self.last - self.first).max(1) as f64;
        LEFT + (day - self.first) as f64 / span * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - (v / self.top.max(f64::MIN_POSITIVE)) * (H - BOTTOM - TOP)
    }
}

fn frame(series: &[Series], top: Option<f64>) -> Option<Frame> {
    let days = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let first = days.clone().min()?;
    let last = days.max()?;
    let top = top.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max)
    });
    Some(Frame {
        first,
        last,
        top: if top > 0.0 { top } else { 1.0 },
    })
}

fn axes(out: &mut String, f: &Frame, label: &dyn Fn(f64) -> String) {
    for i in 0..=4 {
        let v = f.top * f64::from(i) / 4.0;
        let y = f.y(v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&label(v))
        );
    }
    let step = ((f.last - f.first) / 6).max(1);
    let mut day = f.first;
    while day <= f.last {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            f.x(day),
            H - 8.0,
            day_label(day)
        );
        day += step;
    }
}

fn legend(series: &[Series]) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        // A swatch drawn as SVG: the page's policy allows no inline styles.
        let _ = write!(
            out,
            "<span><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/></svg> {}</span> ",
            COLOURS[i % COLOURS.len()],
            esc(&s.name)
        );
    }
    out.push_str("</p>");
    out
}

/// A line per series, values from 0 to `top` (or the largest value).
pub fn lines(
    title: &str,
    series: &[Series],
    top: Option<f64>,
    label: &dyn Fn(f64) -> String,
) -> String {
    let Some(f) = frame(series, top) else {
        return format!("<p class=\"empty\">{}: no data yet.</p>", esc(title));
    };
    let mut out = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">",
        esc(title)
    );
    axes(&mut out, &f, label);
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(d, v)| format!("{:.1},{:.1}", f.x(d), f.y(v)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for &(d, v) in &s.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} {}: {}</title></circle>",
                f.x(d),
                f.y(v),
                esc(&s.name),
                day_label(d),
                esc(&label(v))
            );
        }
    }
    let _ = write!(
        out,
        "</svg><figcaption>{}</figcaption>{}</figure>",
        esc(title),
        legend(series)
    );
    out
}

/// Bars per day, one beside the other for each series.
pub fn bars(title: &str, series: &[Series], label: &dyn Fn(f64) -> String) -> String {
    let Some(f) = frame(series, None) else {
        return format!("<p class=\"empty\">{}: no data yet.</p>", esc(title));
    };
    let days = (f.last - f.first + 1) as f64;
    let slot = (W - LEFT - RIGHT) / days;
    let bar = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    let mut out = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">",
        esc(title)
    );
    axes(&mut out, &f, label);
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for &(d, v) in &s.points {
            let x = LEFT + (d - f.first) as f64 * slot + slot * 0.1 + i as f64 * bar;
            let y = f.y(v);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {}: {}</title></rect>",
                (H - BOTTOM - y).max(0.0),
                esc(&s.name),
                day_label(d),
                esc(&label(v))
            );
        }
    }
    let _ = write!(
        out,
        "</svg><figcaption>{}</figcaption>{}</figure>",
        esc(title),
        legend(series)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_point_per_value_and_escapes_names() {
        let s = vec![Series {
            name: "<b>".into(),
            points: vec![(20_000, 0.5), (20_001, 1.0)],
        }];
        let svg = lines("rate", &s, Some(1.0), &|v| format!("{:.0}%", v * 100.0));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(lines("rate", &[], None, &|v| v.to_string()).contains("no data"));
        let b = bars("cost", &s, &|v| format!("${v:.2}"));
        assert_eq!(b.matches("<rect x=").count(), 2);
    }
}
