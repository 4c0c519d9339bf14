//! A fleet's result: N connections of one case, each judged against its own
//! window by the judge, folded into one result per side that shows the
//! deciding connection (as a repeat shows its deciding run) and the
//! distribution: percentiles, how many were outside their own window, a
//! histogram, the time until the side held no dead connection, and what the
//! run cost (server memory, kaspec's RSS and CPU). Nothing here judges.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::expect::{ms, Verdict};
use crate::report::{worst, CaseResult};

/// The histogram's number of bars.
const BARS: u64 = 40;

/// The distribution of one side of a fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub connections: usize,
    pub detected: usize,
    /// Connections whose own verdict is not a fail (inside their window, or
    /// as the model says).
    pub within: usize,
    /// Connections outside their own window (the fleet fails if any).
    pub outside: usize,
    /// Of those, explained by a documented deviation.
    pub explained: usize,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// The span of the connections' own windows: the lowest lower bound, the
    /// highest upper bound.
    pub window_lo_ms: Option<u64>,
    pub window_hi_ms: Option<u64>,
    /// The furthest a connection was past its own window's end / before its start.
    pub late_by_max_ms: Option<u64>,
    pub early_by_max_ms: Option<u64>,
    /// Until this side held no dead connection: every connection detected
    /// (None: some never were).
    pub all_gone_ms: Option<u64>,
    pub histogram: Vec<Bar>,
    pub resources: Resources,
}

/// One bar of the histogram: detections in [from_ms, to_ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub from_ms: u64,
    pub to_ms: u64,
    pub within: usize,
    pub outside: usize,
}

/// What a fleet run cost, as measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// The server's memory (kB): Pss summed over its process tree (a
    /// PostgreSQL backend per connection included); started, holding the
    /// fleet, after the detection deadline.
    #[serde(alias = "server_rss_kb")]
    pub server_pss_kb: [Option<u64>; 3],
    /// kaspec's peak resident size (VmHWM, kB) and CPU time (user + system).
    pub kaspec_hwm_kb: Option<u64>,
    pub kaspec_cpu_ms: Option<u64>,
    /// Connecting the whole fleet took this long.
    pub connect_ms: u64,
    /// The server-side observer: dumps taken, the longest one.
    pub dumps: usize,
    pub longest_dump_ms: u64,
    /// Packets the testbed's own devices dropped during the fleet (client,
    /// router and server hosts): each can be a keep-alive probe Linux
    /// retries 500 ms later without counting it.
    #[serde(default)]
    pub local_drops: u64,
}

impl Resources {
    pub fn describe(&self) -> String {
        let kb = |v: Option<u64>| v.map(|k| format!("{:.1} MB", k as f64 / 1024.0)).unwrap_or_else(|| "—".into());
        format!(
            "server PSS {} idle → {} holding the fleet → {} after; kaspec VmHWM {}, CPU {}; fleet connected in {}; observer {} dumps, longest {} ms; {} packets dropped by the testbed's own devices",
            kb(self.server_pss_kb[0]),
            kb(self.server_pss_kb[1]),
            kb(self.server_pss_kb[2]),
            kb(self.kaspec_hwm_kb),
            self.kaspec_cpu_ms.map(ms).unwrap_or_else(|| "—".into()),
            ms(self.connect_ms),
            self.dumps,
            self.longest_dump_ms,
            self.local_drops
        )
    }
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// How far `r`'s detection lies outside its own window (late > 0, early < 0; 0 inside).
fn outside_by(r: &CaseResult) -> i64 {
    match (r.detection_ms, r.expected.min_ms, r.expected.max_ms) {
        (Some(d), _, Some(hi)) if d > hi => (d - hi) as i64,
        (Some(d), Some(lo), _) if d < lo => d as i64 - lo as i64,
        // Detected where nothing was expected, or missed: the whole deadline.
        (Some(d), None, None) => d as i64,
        (None, Some(_), _) => r.deadline_ms as i64,
        _ => 0,
    }
}

impl Fleet {
    /// The distribution of `conns` (one side's per-connection results).
    pub fn of(conns: &[CaseResult], resources: Resources) -> Fleet {
        let mut d: Vec<u64> = conns.iter().filter_map(|r| r.detection_ms).collect();
        d.sort_unstable();
        let failed = |r: &CaseResult| r.verdict == Verdict::Fail;
        let outside = conns.iter().filter(|r| failed(r)).count();
        let (win_lo, win_hi) = (conns.iter().filter_map(|r| r.expected.min_ms).min(), conns.iter().filter_map(|r| r.expected.max_ms).max());
        // The bars span the detections and the windows together, so that a
        // wave far past the windows shows as such (and its bars are visible).
        let histogram = match (d.first(), d.last()) {
            (Some(&first), Some(&last)) => {
                let (lo, hi) = (first.min(win_lo.unwrap_or(first)), last.max(win_hi.unwrap_or(last)));
                let width = ((hi - lo) / BARS + 1).max(1);
                let mut bars: Vec<Bar> = (0..BARS).map(|i| Bar { from_ms: lo + i * width, to_ms: lo + (i + 1) * width, within: 0, outside: 0 }).collect();
                for r in conns {
                    if let Some(v) = r.detection_ms {
                        let b = &mut bars[((v - lo) / width).min(BARS - 1) as usize];
                        if failed(r) {
                            b.outside += 1;
                        } else {
                            b.within += 1;
                        }
                    }
                }
                bars
            }
            _ => Vec::new(),
        };
        let by: Vec<i64> = conns.iter().map(outside_by).collect();
        Fleet {
            connections: conns.len(),
            detected: d.len(),
            within: conns.len() - outside,
            outside,
            explained: conns.iter().filter(|r| failed(r) && r.known_deviation.is_some()).count(),
            p50_ms: quantile(&d, 0.5),
            p99_ms: quantile(&d, 0.99),
            max_ms: d.last().copied(),
            window_lo_ms: win_lo,
            window_hi_ms: win_hi,
            late_by_max_ms: by.iter().filter(|v| **v > 0).max().map(|v| *v as u64),
            early_by_max_ms: by.iter().filter(|v| **v < 0).min().map(|v| (-*v) as u64),
            all_gone_ms: if d.len() == conns.len() { d.last().copied() } else { None },
            histogram,
            resources,
        }
    }

    /// One line: `N connections: p50 …, p99 …, max …; K outside their own window`.
    pub fn summary(&self) -> String {
        let o = |v: Option<u64>| v.map(ms).unwrap_or_else(|| "—".into());
        let mut s = format!(
            "fleet of {}: detected {}, p50 {}, p99 {}, max {}; {} outside their own window",
            self.connections,
            self.detected,
            o(self.p50_ms),
            o(self.p99_ms),
            o(self.max_ms),
            self.outside
        );
        if self.explained > 0 {
            let _ = write!(s, " ({} by a documented deviation)", self.explained);
        }
        if let Some(l) = self.late_by_max_ms {
            let _ = write!(s, ", late by up to {}", ms(l));
        }
        if let Some(e) = self.early_by_max_ms {
            let _ = write!(s, ", early by up to {}", ms(e));
        }
        let _ = write!(s, "; windows span {}–{}; no dead connection left after {}", o(self.window_lo_ms), o(self.window_hi_ms), self.all_gone_ms.map(ms).unwrap_or_else(|| "— (some never detected)".into()));
        s
    }

    /// The histogram as an SVG (plotters, as the timelines): detections per
    /// bar, inside their own window (green) or outside (red), over the span
    /// of the connections' windows (light green).
    pub fn histogram_svg(&self) -> String {
        let (Some(first), Some(last)) = (self.histogram.first(), self.histogram.last()) else { return String::new() };
        let mut lo = first.from_ms.min(self.window_lo_ms.unwrap_or(u64::MAX)) as i64;
        let mut hi = last.to_ms.max(self.window_hi_ms.unwrap_or(0)) as i64;
        let pad = ((hi - lo) / 20).max(10);
        lo -= pad;
        hi += pad;
        let top = self.histogram.iter().map(|b| b.within + b.outside).max().unwrap_or(1) as i64 + 1;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 220)).into_drawing_area();
            if root.fill(&WHITE).is_err() {
                return String::new();
            }
            let Ok(mut chart) = ChartBuilder::on(&root).margin(8).x_label_area_size(28).y_label_area_size(48).build_cartesian_2d(lo..hi, 0i64..top) else {
                return String::new();
            };
            let _ = chart.configure_mesh().x_desc("ms after the fault was in force").y_desc("connections").x_labels(10).y_labels(5).draw();
            if let (Some(a), Some(b)) = (self.window_lo_ms, self.window_hi_ms) {
                let _ = chart.draw_series(std::iter::once(Rectangle::new([(a as i64, 0), ((b as i64).max(a as i64 + 1), top)], RGBColor(214, 240, 214).filled())));
            }
            for b in &self.histogram {
                let (x0, x1) = (b.from_ms as i64, b.to_ms as i64);
                let w = b.within as i64;
                let _ = chart.draw_series(std::iter::once(Rectangle::new([(x0, 0), (x1, w)], RGBColor(90, 170, 90).filled())));
                let _ = chart.draw_series(std::iter::once(Rectangle::new([(x0, w), (x1, w + b.outside as i64)], RGBColor(210, 70, 70).filled())));
            }
            let _ = root.present();
        }
        svg
    }
}

impl CaseResult {
    /// Folds one side's per-connection results into the fleet's result: the
    /// verdict is the worst connection's; the detection, window and details
    /// shown are the deciding connection's (an unexplained fail over a
    /// documented one, the furthest outside its window first; with none
    /// outside, the last detection); the distribution is in `fleet`.
    pub fn fold_fleet(conns: Vec<CaseResult>, resources: Resources) -> Option<CaseResult> {
        let fleet = Fleet::of(&conns, resources);
        let verdict = worst(&conns.iter().map(|r| r.verdict).collect::<Vec<_>>());
        let rank = |r: &CaseResult| (r.verdict == verdict, r.known_deviation.is_none(), outside_by(r).abs(), r.detection_ms.unwrap_or(u64::MAX));
        let (pick, _) = conns.iter().enumerate().max_by_key(|(_, r)| rank(r))?;
        let n = conns.len();
        let mut out = conns.into_iter().nth(pick)?;
        out.verdict_detail = format!("connection {} of {n}: {}; {}", pick + 1, out.verdict_detail, fleet.summary());
        out.fleet = Some(fleet);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::result;

    #[test]
    fn a_fleet_folds_into_its_worst_connection_with_the_distribution() {
        let conns: Vec<CaseResult> = (0..100)
            .map(|i| {
                let mut r = result(if i == 42 { Verdict::Fail } else { Verdict::Pass }, None);
                r.detection_ms = Some(if i == 42 { 1500 } else { 1000 + i });
                r
            })
            .collect();
        let f = CaseResult::fold_fleet(conns, Resources::default()).unwrap();
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.detection_ms, Some(1500), "the connection outside its window is shown");
        let st = f.fleet.as_ref().unwrap();
        assert_eq!((st.connections, st.outside, st.within, st.detected), (100, 1, 99, 100));
        assert_eq!((st.p50_ms, st.max_ms, st.late_by_max_ms), (Some(1050), Some(1500), Some(400)));
        assert_eq!(st.histogram.iter().map(|b| b.within + b.outside).sum::<usize>(), 100);
        assert_eq!(st.histogram.iter().map(|b| b.outside).sum::<usize>(), 1);
        assert!(f.verdict_detail.starts_with("connection 43 of 100: "), "{}", f.verdict_detail);
        assert!(st.histogram_svg().contains("<svg"));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.99), Some(4));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(2));
    }
}
