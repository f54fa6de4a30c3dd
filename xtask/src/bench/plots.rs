//! The bench's SVG plots, drawn with `plotters`: the blackout against the
//! machine's RAM, one domU's memory and the number of domUs (a line per
//! kind and tree, min–max bars), and the phases of the blackout stacked
//! for each configuration of a sweep.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::results::{segments, Record};

/// The size of every plot, in pixels.
const SIZE: (u32, u32) = (900, 540);

/// The series of a line plot: one per tree and kind.
fn series_of<'a>(records: &[&'a Record]) -> Vec<(String, Vec<&'a Record>)> {
    let mut out: Vec<(String, Vec<&Record>)> = Vec::new();
    for r in records {
        let name = format!("{} {}", r.tree, r.series());
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(r),
            None => out.push((name, vec![r])),
        }
    }
    out
}

/// A color per series, by its index.
fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 16] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(174, 199, 232),
        RGBColor(255, 152, 150),
        RGBColor(152, 223, 138),
        RGBColor(255, 187, 120),
        RGBColor(197, 176, 213),
        RGBColor(196, 156, 148),
    ];
    COLORS[i % COLORS.len()]
}

/// A line plot of the blackout (ms, median with a min–max bar) against
/// `x(record)` on a log₂ axis, one line per tree and kind, written to
/// `path`. Returns `None` when no record of `sweep` has a blackout.
pub fn blackout_against(
    path: &Path,
    records: &[Record],
    sweep: &str,
    title: &str,
    x_desc: &str,
    x: impl Fn(&Record) -> f64,
) -> Result<Option<PathBuf>, String> {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.sweep == sweep && r.error.is_none() && r.median_us("blackout_us").is_some())
        .collect();
    if rs.is_empty() {
        return Ok(None);
    }
    let xs: Vec<f64> = rs.iter().map(|r| x(r)).collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let y1 = rs
        .iter()
        .filter_map(|r| r.phases_us.get("blackout_us"))
        .map(|s| s.max / 1000.0)
        .fold(0.0, f64::max)
        * 1.15;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let x_range = (x0 / 1.5)..(x1 * 1.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.log_scale().base(2.0), 0.0..y1.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("blackout (ms): median, min–max")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (i, (name, points)) in series_of(&rs).into_iter().enumerate() {
            let c = color(i);
            let mut pts: Vec<(f64, f64, f64, f64)> = points
                .iter()
                .filter_map(|r| {
                    let b = r.phases_us.get("blackout_us")?;
                    Some((x(r), b.median / 1000.0, b.min / 1000.0, b.max / 1000.0))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, c.filled())))?;
            chart.draw_series(
                pts.iter()
                    .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], c.stroke_width(1))),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path.to_path_buf()))
}

/// The phases of the blackout stacked, one bar per configuration of
/// `sweep` in the current tree (medians, ms; sub-phases inside their phase,
/// [`segments`]), written to `path`. `None` if there is none.
pub fn phases_stacked(
    path: &Path,
    records: &[Record],
    sweep: &str,
    title: &str,
) -> Result<Option<PathBuf>, String> {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.sweep == sweep && r.tree == "current" && r.error.is_none())
        .filter(|r| !r.phases_us.is_empty())
        .collect();
    if rs.is_empty() {
        return Ok(None);
    }
    let bars: Vec<Vec<(String, f64)>> = rs.iter().map(|r| segments(r).0).collect();
    // Fields the stack cannot place: named under the legend.
    let mut unplaced: Vec<String> = Vec::new();
    for r in &rs {
        for (k, _) in segments(r).1 {
            if !unplaced.contains(&k) {
                unplaced.push(k);
            }
        }
    }
    // The segment names in first-seen order: one color each.
    let mut names: Vec<String> = Vec::new();
    for bar in &bars {
        for (k, _) in bar {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let top = bars
        .iter()
        .map(|b| b.iter().map(|(_, v)| v / 1000.0).sum::<f64>())
        .fold(0.0, f64::max)
        * 1.1;
    let labels: Vec<String> = rs
        .iter()
        .map(|r| {
            let size = match r.sweep.as_str() {
                "ram" => super::sweep::show_mib(r.ram_mib),
                "count" => format!("{}×", r.domus),
                _ => format!("{}M", r.guest_mib),
            };
            let kind = if r.log_dirty {
                format!("{}+ld", r.kind)
            } else {
                r.kind.clone()
            };
            format!("{kind} {size}")
        })
        .collect();
    let n = rs.len();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        const LEGEND: u32 = 220;
        let width = SIZE.0.max(90 * n as u32 + 100 + LEGEND);
        let root = SVGBackend::new(path, (width, SIZE.1)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(width - LEGEND);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..top.max(1.0))?;
        let label_of = |v: &f64| -> String {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label_of)
            .x_label_style(("sans-serif", 13))
            .y_desc("blackout phases (ms, medians)")
            .draw()?;
        for (ci, name) in names.iter().enumerate() {
            let c = color(ci);
            let rects: Vec<Rectangle<(f64, f64)>> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, bar)| {
                    let at = bar.iter().position(|(k, _)| k == name)?;
                    let below: f64 = bar[..at].iter().map(|(_, v)| v / 1000.0).sum();
                    let h = bar[at].1 / 1000.0;
                    let x = i as f64;
                    Some(Rectangle::new(
                        [(x - 0.35, below), (x + 0.35, below + h)],
                        c.filled(),
                    ))
                })
                .collect();
            chart.draw_series(rects)?;
            // The legend, top down in the order the bars stack bottom up.
            let y = 60 + 22 * ci as i32;
            legend.draw(&Rectangle::new([(10, y), (24, y + 14)], c.filled()))?;
            legend.draw(&Text::new(
                name.trim_end_matches("_us").to_string(),
                (32, y),
                ("sans-serif", 14),
            ))?;
        }
        let mut y = 60 + 22 * names.len() as i32 + 16;
        if !unplaced.is_empty() {
            legend.draw(&Text::new("not stacked:", (10, y), ("sans-serif", 13)))?;
            for k in &unplaced {
                y += 18;
                legend.draw(&Text::new(k.clone(), (18, y), ("sans-serif", 13)))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path.to_path_buf()))
}

/// A line plot of the blackout along one sweep.
struct LinePlot {
    file: &'static str,
    sweep: &'static str,
    title: &'static str,
    x_desc: &'static str,
    x: fn(&Record) -> f64,
}

/// Every plot of a run, in `dir`: the files written.
pub fn all(dir: &Path, records: &[Record]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let lines = [
        LinePlot {
            file: "blackout-ram.svg",
            sweep: "ram",
            title: "Blackout against the machine's RAM (two PV domUs of 64 MiB)",
            x_desc: "machine RAM (GiB)",
            x: |r| f64::from(r.ram_mib) / 1024.0,
        },
        LinePlot {
            file: "blackout-guest.svg",
            sweep: "guest",
            title: "Blackout against one domU's memory",
            x_desc: "domU memory (MiB)",
            x: |r| r.guest_mib as f64,
        },
        LinePlot {
            file: "blackout-count.svg",
            sweep: "count",
            title: "Blackout against the number of domUs (4 MiB each)",
            x_desc: "domUs",
            x: |r| f64::from(r.domus),
        },
    ];
    for p in lines {
        out.extend(blackout_against(
            &dir.join(p.file),
            records,
            p.sweep,
            p.title,
            p.x_desc,
            p.x,
        )?);
    }
    for (sweep, what) in [
        ("ram", "the machine's RAM"),
        ("guest", "one domU's memory"),
        ("count", "the number of domUs"),
    ] {
        out.extend(phases_stacked(
            &dir.join(format!("phases-{sweep}.svg")),
            records,
            sweep,
            &format!("Phases of the blackout against {what}"),
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::results::sample::record;
    use super::*;

    #[test]
    fn every_plot_of_a_run_is_written_with_its_series_and_phases() {
        let dir = std::env::temp_dir().join(format!("hvlu-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut records = Vec::new();
        for (tree, gib, scale) in [
            ("current", 1, 1.0),
            ("current", 64, 1.1),
            ("baseline", 1, 1.0),
            ("baseline", 64, 10.0),
        ] {
            let mut r = record(&[
                ("pause_us", 50.0),
                ("preflight_us", 9_000.0 * scale),
                ("preflight_runs_us", 2_000.0),
                ("boot_us", 10_000.0 * scale),
                ("pass_us", 8_000.0 * scale),
                ("blackout_us", 27_050.0 * scale),
                ("release_us", 200.0),
                ("hvnew_us", 700.0),
            ]);
            r.tree = tree.into();
            r.ram_mib = gib * 1024;
            records.push(r);
        }
        let written = all(&dir, &records).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // Only the RAM sweep has records.
        assert_eq!(names, ["blackout-ram.svg", "phases-ram.svg"]);
        let line = std::fs::read_to_string(dir.join("blackout-ram.svg")).unwrap();
        assert!(line.starts_with("<svg"), "{}", &line[..80]);
        for label in ["current pv", "baseline pv", "machine RAM (GiB)"] {
            assert!(line.contains(label), "{label}");
        }
        let stacked = std::fs::read_to_string(dir.join("phases-ram.svg")).unwrap();
        for label in [
            "preflight_runs",
            "preflight_rest",
            "boot",
            "not stacked:",
            "hvnew_us",
            "pv 64G",
        ] {
            assert!(stacked.contains(label), "{label}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
