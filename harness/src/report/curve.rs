//! A curve over a swept parameter (the HTTP reuse race: the share of
//! requests that failed at each idle time), drawn by plotters as the
//! timelines and the fleet histogram are.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Points (x, one y per series), each y a share in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub title: String,
    pub x_label: String,
    pub series: Vec<String>,
    pub points: Vec<(i64, Vec<f64>)>,
    /// An x range drawn shaded (the HTTP race: the server's close window,
    /// where failures are allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<(i64, i64)>,
}

const COLOURS: [RGBColor; 3] = [RGBColor(210, 70, 70), RGBColor(70, 110, 200), RGBColor(90, 170, 90)];

impl Curve {
    /// The share of the items at each x (`groups`) that pass each series'
    /// test, one series per `(name, test)`.
    pub fn of_shares<T>(title: String, x_label: &str, series: &[(&str, &dyn Fn(&T) -> bool)], groups: &[(i64, Vec<&T>)], band: Option<(i64, i64)>) -> Curve {
        let share = |at: &[&T], f: &dyn Fn(&T) -> bool| at.iter().filter(|t| f(t)).count() as f64 / at.len().max(1) as f64;
        Curve {
            title,
            x_label: x_label.into(),
            series: series.iter().map(|(n, _)| n.to_string()).collect(),
            points: groups.iter().map(|(x, at)| (*x, series.iter().map(|(_, f)| share(at, *f)).collect())).collect(),
            band,
        }
    }

    /// The curve as an SVG: one line with markers per series, y in %.
    pub fn svg(&self) -> String {
        let (Some(first), Some(last)) = (self.points.first(), self.points.last()) else { return String::new() };
        let pad = ((last.0 - first.0) / 20).max(1);
        let (lo, hi) = (first.0 - pad, last.0 + pad);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 240)).into_drawing_area();
            if root.fill(&WHITE).is_err() {
                return String::new();
            }
            let Ok(mut chart) = ChartBuilder::on(&root).caption(&self.title, ("sans-serif", 14)).margin(8).x_label_area_size(28).y_label_area_size(48).build_cartesian_2d(lo..hi, 0f64..105f64) else {
                return String::new();
            };
            let _ = chart.configure_mesh().x_desc(self.x_label.as_str()).y_desc("% of requests").x_labels(10).y_labels(6).draw();
            if let Some((a, b)) = self.band {
                let _ = chart.draw_series(std::iter::once(Rectangle::new([(a.max(lo), 0.0), (b.min(hi).max(a + 1), 105.0)], RGBColor(214, 240, 214).filled())));
            }
            for (i, name) in self.series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                let pts: Vec<(i64, f64)> = self.points.iter().map(|(x, ys)| (*x, ys.get(i).copied().unwrap_or(0.0) * 100.0)).collect();
                if let Ok(s) = chart.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2))) {
                    s.label(name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
                }
                let _ = chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())));
            }
            let _ = chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw();
            let _ = root.present();
        }
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_draws_each_series() {
        let c = Curve { title: "t".into(), x_label: "x".into(), series: vec!["failed".into(), "reused".into()], points: vec![(980, vec![0.0, 1.0]), (1000, vec![0.5, 0.5]), (1020, vec![0.0, 0.0])], band: Some((995, 1007)) };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.contains("failed") && svg.contains("reused"), "{svg}");
        assert!(Curve { points: vec![], ..c.clone() }.svg().is_empty());
        let items = [1, 2, 3, 4];
        let shares = Curve::of_shares("t".into(), "x", &[("even", &|n: &i32| n % 2 == 0)], &[(10, items.iter().collect()), (20, vec![&items[1]])], None);
        assert_eq!(shares.points, vec![(10, vec![0.5]), (20, vec![1.0])]);
    }
}
