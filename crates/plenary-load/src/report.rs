//! Outputs of a run: a markdown table and an SVG chart (written by hand:
//! a few polylines do not need a plotting library).

use std::fmt::Write as _;

use crate::run::RunReport;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// What the receivers cell of a table adds: ` (N failed)` peers, or that
/// the step failed because the server exited.
pub(crate) fn failed_note(failed_peers: usize, error: Option<&str>) -> String {
    match (failed_peers, error) {
        (_, Some(_)) => " (step failed: server exited)".to_string(),
        (0, None) => String::new(),
        (n, None) => format!(" ({n} failed)"),
    }
}

/// A markdown table of every step of `runs`, one row per target and step.
pub fn markdown(runs: &[RunReport]) -> String {
    let mut s = String::new();
    s.push_str("| target | scenario | receivers | pkt/s | Mbit/s | server CPU | CPU-s / Mpkt | loss % | latency p50 / p99 ms | p99 audio / video ms | RSS MiB | KiB / subscriber (slope) | join p50 / max ms | generator CPU |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs {
        for st in &r.steps {
            let _ = writeln!(
                s,
                "| {} | {:?} | {}{} | {:.0} | {:.1} | {:.0}% | {:.2} | {:.2} | {} / {} | {} / {} | {:.1} | {} ({}) | {} / {} | {:.0}% |",
                r.target,
                r.scenario,
                st.subscribers,
                crate::report::failed_note(st.failed_peers, st.error.as_deref()),
                st.packets_per_s,
                st.bits_per_s / 1e6,
                st.server_cpu * 100.0,
                st.cpu_s_per_mpkt,
                st.loss_pct,
                opt(st.latency_p50_ms, 2),
                opt(st.latency_p99_ms, 2),
                opt(st.latency_audio_p99_ms, 2),
                opt(st.latency_video_p99_ms, 2),
                st.rss_mib,
                opt(st.rss_per_subscriber_kib, 0),
                opt(st.rss_slope_kib, 0),
                opt(st.join_p50_ms, 0),
                opt(st.join_max_ms, 0),
                st.generator_cpu * 100.0,
            );
        }
    }
    s
}

/// Reads one plotted value of a step.
type Metric = fn(&crate::run::StepResult) -> f64;

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// An SVG with two panels against receivers (log scale): server CPU-seconds
/// per million forwarded packets, and loss %, one line per run.
pub fn svg(runs: &[RunReport], title: &str) -> String {
    let panel_w = 380.0;
    // Left margins of both panels (y-axis labels) and a right margin for
    // the last x-axis label, which is centred on the panel's right edge.
    let (w, h) = (70.0 + panel_w + 70.0 + panel_w + 40.0, 420.0);
    let (top, bottom) = (60.0, 350.0);
    let xs: Vec<f64> = runs.iter().flat_map(|r| r.steps.iter().map(|s| s.subscribers.max(1) as f64)).collect();
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let xmax = xs.iter().copied().fold(1.0, f64::max).max(xmin * 2.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ =
        writeln!(out, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#, w / 2.0, escape(title));
    let panels: [(&str, Metric); 2] =
        [("server CPU-s per million packets", |s| s.cpu_s_per_mpkt), ("loss %", |s| s.loss_pct)];
    for (pi, (label, value)) in panels.iter().enumerate() {
        let x0 = 70.0 + pi as f64 * (panel_w + 70.0);
        let ys: Vec<f64> = runs.iter().flat_map(|r| r.steps.iter().map(value)).filter(|v| v.is_finite()).collect();
        let ymax = nice(ys.iter().copied().fold(0.0, f64::max).max(if pi == 1 { 1.0 } else { 0.1 }));
        let px = |x: f64| x0 + (x.ln() - xmin.ln()) / (xmax.ln() - xmin.ln()) * panel_w;
        let py = |y: f64| bottom - y / ymax * (bottom - top);
        let _ = writeln!(
            out,
            r##"<rect x="{x0}" y="{top}" width="{panel_w}" height="{}" fill="none" stroke="#888"/>"##,
            bottom - top
        );
        let _ =
            writeln!(out, r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#, x0 + panel_w / 2.0, top - 10.0);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">receivers (log scale)</text>"#,
            x0 + panel_w / 2.0,
            bottom + 35.0
        );
        for i in 0..=4 {
            let y = ymax * f64::from(i) / 4.0;
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" x2="{}" y1="{py}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + panel_w,
                x0 - 5.0,
                py(y) + 4.0,
                trim(y),
                py = py(y)
            );
        }
        let mut ticks: Vec<f64> = xs.clone();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        for t in ticks {
            let _ = writeln!(out, r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#, px(t), bottom + 16.0);
        }
        for (ri, r) in runs.iter().enumerate() {
            let color = COLORS[ri % COLORS.len()];
            let pts: Vec<String> = r
                .steps
                .iter()
                .filter(|s| value(s).is_finite())
                .map(|s| format!("{:.1},{:.1}", px(s.subscribers.max(1) as f64), py(value(s))))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
        }
    }
    for (ri, r) in runs.iter().enumerate() {
        let color = COLORS[ri % COLORS.len()];
        let x = 70.0 + ri as f64 * 160.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{} ({:?})</text>"#,
            h - 22.0,
            x + 18.0,
            h - 17.0,
            escape(r.target),
            r.scenario
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Rounds up to 1, 2 or 5 × a power of ten.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{RunReport, Scenario, StepResult};
    use crate::synth::MediaSpec;

    fn step(n: usize, cpu: f64, loss: f64) -> StepResult {
        StepResult {
            subscribers: n,
            publishers: 1,
            failed_peers: 0,
            seconds: 20.0,
            packets_per_s: 1000.0,
            bits_per_s: 1e6,
            server_cpu: 0.5,
            cpu_s_per_mpkt: cpu,
            loss_pct: loss,
            latency_p50_ms: Some(1.0),
            latency_p99_ms: None,
            latency_audio_p99_ms: None,
            latency_video_p99_ms: None,
            latency_samples: 10,
            rss_mib: 30.0,
            rss_per_subscriber_kib: Some(50.0),
            rss_slope_kib: None,
            join_p50_ms: Some(100.0),
            join_max_ms: Some(200.0),
            generator_cpu: 0.3,
            error: None,
        }
    }

    #[test]
    fn table_and_chart_have_every_step() {
        let spec = MediaSpec {
            video_bps: 1,
            fps: 1,
            keyframe_interval: 1,
            width: 1,
            height: 1,
            audio_bps: 1,
            pace_bps: 0,
            pace_burst_ms: 0,
        };
        let runs = vec![RunReport {
            target: "plenary",
            scenario: Scenario::Fanout,
            started_unix: 0,
            machine: String::new(),
            spec,
            steps: vec![step(50, 2.0, 0.0), step(100, 1.5, 0.3)],
            stopped: String::new(),
        }];
        let md = markdown(&runs);
        assert_eq!(md.lines().count(), 4);
        assert!(md.contains("| plenary | Fanout | 100 |"));
        assert!(md.contains("| 1.50 | 0.30 | 1.00 / - |"));
        let svg = svg(&runs, "t");
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        // Every label lies inside the picture (a tick label centred on the
        // right panel's edge was cut in half).
        let width: f64 = svg.split("width=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().parse().unwrap();
        for text in svg.split("<text ").skip(1) {
            let x: f64 = text.split("x=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().parse().unwrap();
            let chars = text.split('>').nth(1).and_then(|s| s.split('<').next()).unwrap().chars().count() as f64;
            // Font size 12: about 7 px per character; middle-anchored text spans half each side.
            let right = if text.contains(r#"text-anchor="middle""#) {
                x + chars * 3.5
            } else if text.contains(r#"text-anchor="end""#) {
                x
            } else {
                x + chars * 7.0
            };
            assert!(right <= width, "label at x={x} ({chars} chars) runs past the {width} px picture");
        }
        assert_eq!(nice(0.7), 1.0);
        assert_eq!(nice(3.0), 5.0);
    }
}
