//! Turns the scenario lines the reliability tier appended to $RINGSHIFT_REPORT (JSON lines) into
//! a markdown table; with `--readme FILE` also replaces the table between the
//! `<!-- reliability:begin -->` and `<!-- reliability:end -->` markers in FILE.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ringshift_e2e::support::report::{ScenarioLine, table};

const BEGIN: &str = "<!-- reliability:begin -->";
const END: &str = "<!-- reliability:end -->";

#[derive(Parser)]
struct Args {
    /// The JSON-lines report.
    report: PathBuf,
    /// Rewrite the table in this README between the markers.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// A line printed under the table (e.g. machine and build).
    #[arg(long, default_value = "")]
    note: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.report) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reading {}: {e}", args.report.display());
            return ExitCode::from(2);
        }
    };
    let mut lines = Vec::new();
    for (n, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<ScenarioLine>(l) {
            Ok(s) => lines.push(s),
            Err(e) => {
                eprintln!("{}:{}: {e}", args.report.display(), n + 1);
                return ExitCode::from(2);
            }
        }
    }
    if lines.is_empty() {
        eprintln!("{}: no scenario ran", args.report.display());
        return ExitCode::from(2);
    }
    let mut out = table(&lines);
    if !args.note.is_empty() {
        out.push('\n');
        out.push_str(&args.note);
        out.push('\n');
    }
    println!("{out}");
    if let Some(readme) = &args.readme {
        if let Err(e) = replace_between_markers(readme, &out) {
            eprintln!("{}: {e}", readme.display());
            return ExitCode::from(2);
        }
        println!("updated the table in {}", readme.display());
    }
    if lines.iter().all(|l| l.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replace_between_markers(path: &PathBuf, body: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("markers {BEGIN} / {END} not found"));
    };
    if e < b {
        return Err("end marker before begin marker".into());
    }
    let new = format!("{}{BEGIN}\n{body}{}", &text[..b], &text[e..]);
    std::fs::write(path, new).map_err(|e| e.to_string())
}
