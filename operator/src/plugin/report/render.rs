//! Draws a report as one PNG: a title, then the panels stacked on a shared time axis, so that
//! a dip in ops/s lines up with the cutover that caused it.

use std::sync::OnceLock;

use plotters::prelude::*;

use super::{Report, ReportError};

const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 230;
const TITLE_HEIGHT: u32 = 70;
const FAMILY: &str = "sans-serif";

/// Where a TrueType font is looked for (Debian's fonts-dejavu-core first); the
/// RINGSHIFT_REPORT_FONT environment variable names another.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
];

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the font once per process (plotters keeps fonts in a global table).
fn font() -> Result<(), ReportError> {
    FONT.get_or_init(|| {
        let env = std::env::var("RINGSHIFT_REPORT_FONT").ok();
        let candidates: Vec<&str> = env.iter().map(String::as_str).chain(FONT_PATHS).collect();
        let (path, bytes) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (*p, b)))
            .ok_or_else(|| {
                format!(
                    "no TrueType font at {}: install fonts-dejavu-core or set RINGSHIFT_REPORT_FONT",
                    candidates.join(", ")
                )
            })?;
        // Fonts live as long as the process: plotters wants 'static bytes.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    })
    .clone()
    .map_err(ReportError::Font)
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn mm_ss(secs: &f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn render_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Render(e.to_string())
}

/// The PNG image of `report` (RGB, WIDTH wide, one band per panel).
pub fn png(report: &Report) -> Result<Vec<u8>, ReportError> {
    font()?;
    let height = TITLE_HEIGHT + PANEL_HEIGHT * report.panels.len().max(1) as u32;
    let mut rgb = vec![0u8; (WIDTH * height * 3) as usize];
    let span = (report.end - report.start).max(1.0);
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(render_err)?;
        let (top, body) = root.split_vertically(TITLE_HEIGHT);
        top.draw_text(
            &report.title,
            &(FAMILY, 24).into_font().color(&BLACK),
            (16, 10),
        )
        .map_err(render_err)?;
        top.draw_text(
            &report.subtitle,
            &(FAMILY, 16).into_font().color(&RGBColor(90, 90, 90)),
            (16, 42),
        )
        .map_err(render_err)?;
        let areas = body.split_evenly((report.panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(&report.panels) {
            let top_value = panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0f64, f64::max);
            let y_max = if top_value > 0.0 {
                top_value * 1.15
            } else {
                1.0
            };
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FAMILY, 18))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..span, 0f64..y_max)
                .map_err(render_err)?;
            chart
                .configure_mesh()
                .x_desc("time since start (m:ss)")
                .y_desc(panel.unit)
                .x_label_formatter(&mm_ss)
                .label_style((FAMILY, 13))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(render_err)?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let points = s.points.iter().map(|(t, v)| (t - report.start, *v));
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(render_err)?
                    .label(if s.points.is_empty() {
                        format!("{} (no data)", s.label)
                    } else {
                        s.label.clone()
                    })
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FAMILY, 13))
                .draw()
                .map_err(render_err)?;
        }
        root.present().map_err(render_err)?;
    }
    encode(&rgb, WIDTH, height)
}

fn encode(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(render_err)?;
        w.write_image_data(rgb).map_err(render_err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Panel, Series};
    use super::*;

    fn report(with_data: bool) -> Report {
        let points: Vec<(f64, f64)> = if with_data {
            (0..60)
                .map(|i| (1000.0 + i as f64, (i % 7) as f64))
                .collect()
        } else {
            vec![]
        };
        Report {
            title: "ringshift demo/demo".into(),
            subtitle: "a test".into(),
            start: 1000.0,
            end: 1060.0,
            panels: vec![
                Panel {
                    title: "one",
                    unit: "ops/s",
                    series: vec![Series {
                        label: "all".into(),
                        points: points.clone(),
                    }],
                },
                Panel {
                    title: "two",
                    unit: "ms",
                    series: vec![Series {
                        label: "p99".into(),
                        points,
                    }],
                },
            ],
        }
    }

    /// Pixels of the line colour in each panel's band.
    fn colored_per_band(png_bytes: &[u8], bands: usize) -> Vec<usize> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.width, WIDTH);
        assert_eq!(
            info.height,
            TITLE_HEIGHT + PANEL_HEIGHT * bands as u32,
            "one band per panel"
        );
        let mut counts = vec![0; bands];
        for y in TITLE_HEIGHT..info.height {
            let band = ((y - TITLE_HEIGHT) / PANEL_HEIGHT) as usize;
            for x in 0..info.width {
                let i = ((y * info.width + x) * 3) as usize;
                if buf[i..i + 3] == [31, 119, 180] {
                    counts[band] += 1;
                }
            }
        }
        counts
    }

    #[test]
    fn each_panel_draws_its_line() {
        if font().is_err() {
            panic!("{}", font().unwrap_err());
        }
        let with = colored_per_band(&png(&report(true)).unwrap(), 2);
        let without = colored_per_band(&png(&report(false)).unwrap(), 2);
        for (w, wo) in with.iter().zip(&without) {
            assert!(w > &(wo + 200), "line pixels {w} with data vs {wo} without");
        }
    }

    #[test]
    fn time_labels_read_as_minutes_and_seconds() {
        assert_eq!(mm_ss(&0.0), "0:00");
        assert_eq!(mm_ss(&125.4), "2:05");
        assert_eq!(mm_ss(&-3.0), "0:00");
    }
}
