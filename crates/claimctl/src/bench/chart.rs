//! The latency chart: p50, p95 and p99 (publish → decision received, log scale) against offered
//! load, one polyline per percentile, with the targets as dashed lines. Plain SVG text.

use std::fmt::Write;

use crate::bench::report::{PERCENTILES, Report};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 3] = ["#1f77b4", "#ff7f0e", "#d62728"];

pub fn latency_against_load(report: &Report) -> String {
    let points: Vec<(f64, [f64; 3])> = report
        .paced
        .iter()
        .filter_map(|step| {
            let latency = step.latency.as_ref()?;
            let rate = f64::from(step.rate?);
            Some((rate, PERCENTILES.map(|(name, _)| latency.percentile(name).max(0.01))))
        })
        .collect();
    // The p99 target depends on the queue kind (stack.md 8.3, G3).
    let p99_target = if report.queue_type == "classic" { 50.0 } else { 250.0 };
    let targets = [(10.0, "p50 target 10 ms"), (p99_target, &*format!("p99 target {p99_target} ms"))];

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">Latency, publish → decision received ({} work queue, {} CPUs)</text>"#,
        LEFT + plot_width() / 2.0,
        report.queue_type,
        report.machine.cpus
    );
    if points.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no paced runs</text>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }

    let max_rate = points.iter().map(|(rate, _)| *rate).fold(0.0, f64::max);
    let x_max = nice_ceiling(max_rate * 1.05);
    let values = points.iter().flat_map(|(_, values)| *values).chain(targets.iter().map(|(value, _)| *value));
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(low, high), value| (low.min(value), high.max(value)));
    // A little room below, so a target or a point on a decade does not sit on the axis.
    let decade_low = (low * 0.9).log10().floor() as i32;
    let decade_high = (high.log10().ceil() as i32).max(decade_low + 1);
    let x = |rate: f64| LEFT + rate / x_max * plot_width();
    let y = |millis: f64| {
        let span = f64::from(decade_high - decade_low);
        TOP + (f64::from(decade_high) - millis.log10()) / span * plot_height()
    };

    // Axes, decade grid lines and labels.
    let (bottom, right) = (TOP + plot_height(), LEFT + plot_width());
    for decade in decade_low..=decade_high {
        let value = 10f64.powi(decade);
        let at = y(value);
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{at:.1}" x2="{right}" y2="{at:.1}" stroke="#ddd"/>"##);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            at + 4.0,
            label(value)
        );
    }
    for (rate, _) in &points {
        let at = x(*rate);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{bottom}" x2="{at:.1}" y2="{:.1}" stroke="#333"/>"##,
            bottom + 5.0
        );
        let _ = writeln!(svg, r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{rate}</text>"#, bottom + 20.0);
    }
    let _ = writeln!(svg, r##"<path d="M{LEFT},{TOP} V{bottom} H{right}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">offered load (claims/s)</text>"#,
        LEFT + plot_width() / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>"#,
        TOP + plot_height() / 2.0
    );

    for (value, name) in &targets {
        let at = y(*value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{right}" y2="{at:.1}" stroke="#888" stroke-dasharray="6 4"/>"##
        );
        let _ = writeln!(svg, r##"<text x="{:.1}" y="{:.1}" fill="#666">{name}</text>"##, right + 6.0, at + 4.0);
    }
    for (index, ((name, _), colour)) in PERCENTILES.iter().zip(COLOURS).enumerate() {
        let line: Vec<String> =
            points.iter().map(|(rate, values)| format!("{:.1},{:.1}", x(*rate), y(values[index]))).collect();
        let _ =
            writeln!(svg, r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, line.join(" "));
        for (rate, values) in &points {
            let _ =
                writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, x(*rate), y(values[index]));
        }
        let legend_y = TOP + 10.0 + index as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="2"/>"#,
            right + 8.0,
            right + 28.0
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{name}</text>"#, right + 34.0, legend_y + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// The next of 1, 2, 2.5, 5 × 10ⁿ at or above `value`: a round end for the load axis.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.max(1.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().find(|step| step * magnitude >= value).unwrap_or(10.0);
    step * magnitude
}

/// `0.1`, `1`, `10`, `1000`: decades without a trailing `.0`.
fn label(value: f64) -> String {
    if value >= 1.0 { format!("{value:.0}") } else { format!("{value}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(1050.0), 2000.0);
        assert_eq!(nice_ceiling(52.5), 100.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn decade_labels_are_plain() {
        assert_eq!([label(0.1), label(1.0), label(100.0)], ["0.1", "1", "100"]);
    }
}
