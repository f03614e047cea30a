//! Resource samples per container, and the inline SVG charts drawn from
//! them on the server (the page swaps in a fresh chart with each sample).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::docker::ContainerStats;

/// Samples kept per container: two minutes at one sample every 2 s.
pub const KEEP: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
}

/// The last [`KEEP`] samples of every container someone has watched.
#[derive(Debug, Default)]
pub struct Samples {
    by_container: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl Samples {
    /// Adds a sample unless one was taken within the last 1.5 s (two pages
    /// open on one container sample it once).
    pub fn push(&self, id: &str, s: &ContainerStats) -> bool {
        let now = crate::db::now_ms();
        let mut all = self.by_container.lock().expect("samples lock");
        // Forget containers nobody has looked at for ten minutes.
        all.retain(|_, q| q.back().is_some_and(|l| now - l.at_ms < 600_000));
        let q = all.entry(id.to_string()).or_default();
        if q.back().is_some_and(|l| now - l.at_ms < 1_500) {
            return false;
        }
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(Sample {
            at_ms: now,
            cpu_percent: s.cpu_percent,
            memory_bytes: s.memory_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
        });
        true
    }

    pub fn of(&self, id: &str) -> Vec<Sample> {
        self.by_container
            .lock()
            .expect("samples lock")
            .get(id)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The two charts of a container, ready to be put in the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Charts {
    pub cpu_svg: String,
    pub mem_svg: String,
    pub cpu_text: String,
    pub mem_text: String,
}

pub fn charts(samples: &[Sample]) -> Charts {
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_percent).collect();
    let mem: Vec<f64> = samples.iter().map(|s| s.memory_bytes as f64).collect();
    let cpu_max = cpu.iter().copied().fold(100.0_f64, f64::max);
    let mem_max = samples
        .last()
        .map(|s| s.memory_limit_bytes as f64)
        .filter(|l| *l > 0.0)
        .unwrap_or(1.0)
        .min(mem.iter().copied().fold(1.0_f64, f64::max) * 1.25)
        .max(1.0);
    let (cpu_text, mem_text) = match samples.last() {
        Some(s) => (
            format!("{:.1} %", s.cpu_percent),
            format!(
                "{} of {}",
                super::bytes(s.memory_bytes),
                super::bytes(s.memory_limit_bytes)
            ),
        ),
        None => ("no samples yet".into(), "no samples yet".into()),
    };
    Charts {
        cpu_svg: line_chart(&cpu, cpu_max, &format!("CPU, {cpu_text}"), "cpu"),
        mem_svg: line_chart(&mem, mem_max, &format!("Memory, {mem_text}"), "mem"),
        cpu_text,
        mem_text,
    }
}

const W: f64 = 300.0;
const H: f64 = 80.0;

/// A line with a filled area under it, scaled to `max`, newest on the
/// right; [`KEEP`] samples span the full width.
pub fn line_chart(values: &[f64], max: f64, label: &str, class: &str) -> String {
    let mut svg = String::with_capacity(256 + values.len() * 16);
    let _ = write!(
        svg,
        r#"<svg class="chart {class}" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        escape(label)
    );
    for f in [0.25, 0.5, 0.75] {
        let y = H * f;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="0" y1="{y}" x2="{W}" y2="{y}"/>"#
        );
    }
    if !values.is_empty() {
        let step = W / (KEEP - 1) as f64;
        let x0 = W - step * (values.len() - 1) as f64;
        let mut points = String::new();
        for (i, v) in values.iter().enumerate() {
            let x = x0 + step * i as f64;
            let y = H - (v / max).clamp(0.0, 1.0) * (H - 2.0) - 1.0;
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let points = points.trim_end();
        let _ = write!(
            svg,
            r#"<polygon class="area" points="{x0:.1},{H} {points} {W},{H}"/><polyline class="line" points="{points}"/>"#
        );
        // The newest value, visible even when it is the only one.
        if let Some(last) = points.rsplit(' ').next() {
            let (x, y) = last.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r#"<circle class="dot" cx="{x}" cy="{y}" r="2.5"/>"#);
        }
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_scale_and_label() {
        let svg = line_chart(&[0.0, 50.0, 100.0], 100.0, "CPU <x>", "cpu");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("aria-label=\"CPU &lt;x&gt;\""));
        // The newest point is at the right edge, at the top for 100 %.
        assert!(svg.contains("300.0,1.0\"/>"), "{svg}");
        assert!(svg.contains(r#"cx="300.0" cy="1.0""#), "{svg}");
        assert!(!line_chart(&[], 1.0, "", "m").contains("polyline"));
    }

    #[test]
    fn samples_are_deduplicated_and_bounded() {
        let s = Samples::default();
        let st = ContainerStats {
            id: "a".into(),
            cpu_percent: 1.0,
            memory_bytes: 10,
            memory_limit_bytes: 100,
            memory_percent: 10.0,
            network_rx_bytes: 0,
            network_tx_bytes: 0,
            pids: None,
        };
        assert!(s.push("a", &st));
        assert!(!s.push("a", &st), "a second sample within 1.5 s is dropped");
        assert_eq!(s.of("a").len(), 1);
        assert!(s.of("b").is_empty());
        let c = charts(&s.of("a"));
        assert_eq!(c.cpu_text, "1.0 %");
        assert!(c.mem_text.starts_with("10 B of 100 B"));
    }
}
