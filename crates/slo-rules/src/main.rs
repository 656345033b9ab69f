//! `slo-rules`: Sloth's command line for generating SLO rules.
//!
//! ```text
//! slo-rules generate --input SPEC [--out FILE|-] [--extra-labels k=v ...] [--default-slo-period 30d]
//!                    [--disable-recordings] [--disable-alerts] [--disable-optimized-rules]
//! slo-rules validate --input SPEC
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use slo_rules::format::PromDuration;
use slo_rules::spec::Labels;

/// Generates Prometheus SLO rules from Sloth `prometheus/v1` specs (the rules Sloth v0.16 writes).
#[derive(Parser)]
#[command(name = "slo-rules", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates the recording and alert rules of a spec file.
    Generate(GenerateArgs),
    /// Checks a spec file without writing anything.
    Validate(InputArgs),
}

#[derive(Args)]
struct InputArgs {
    /// SLO spec file (one or more YAML documents).
    #[arg(short = 'i', long = "input")]
    input: PathBuf,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output rule file; `-` writes to stdout.
    #[arg(short = 'o', long = "out", default_value = "-")]
    out: String,
    /// Extra label `key=value` added to every generated rule (repeatable).
    #[arg(short = 'l', long = "extra-labels", value_parser = parse_label)]
    extra_labels: Vec<(String, String)>,
    /// SLO period whose alert windows to use (30d or 28d).
    #[arg(long = "default-slo-period", default_value = "30d")]
    default_slo_period: String,
    /// Leaves out the recording rules.
    #[arg(long)]
    disable_recordings: bool,
    /// Leaves out the alert rules.
    #[arg(long)]
    disable_alerts: bool,
    /// Computes the period SLI from the raw series instead of the 5m SLI.
    #[arg(long)]
    disable_optimized_rules: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    slo_rules::spec::check_label(k, v).map_err(|e| format!("{text:?}: {e}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("slo-rules: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate(args) => {
            let specs = load(&args.input)?;
            let slos: usize = specs.iter().map(|s| s.slos.len()).sum();
            println!(
                "{}: {} document(s), {slos} SLO(s): valid",
                args.input.display(),
                specs.len()
            );
            Ok(())
        }
        Command::Generate(args) => generate(args),
    }
}

fn load(input: &Path) -> Result<Vec<slo_rules::spec::Spec>> {
    if input.is_dir() {
        bail!(
            "{}: is a directory; pass a spec file (directory input is not supported)",
            input.display()
        );
    }
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    slo_rules::spec::parse(&text).with_context(|| format!("{}: invalid SLO spec", input.display()))
}

fn generate(args: GenerateArgs) -> Result<()> {
    let period = PromDuration::parse(&args.default_slo_period)
        .map_err(|e| anyhow::anyhow!("--default-slo-period: {e}"))?;
    let mut opts = slo_rules::Options::new(period)
        .map_err(|e| anyhow::anyhow!("--default-slo-period: {e}"))?;
    opts.extra_labels = args.extra_labels.into_iter().collect::<Labels>();
    opts.disable_recordings = args.disable_recordings;
    opts.disable_alerts = args.disable_alerts;
    opts.disable_optimized_rules = args.disable_optimized_rules;

    let specs = load(&args.input.input)?;
    let groups = slo_rules::generate::generate(&specs, &opts)?;
    let text = slo_rules::render(&groups, &source_name(&args.input.input))?;
    if args.out == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(());
    }
    write_atomically(Path::new(&args.out), &text)
}

/// The spec's name for the header: the path as given when relative, else the file name (a
/// generated file must not name a directory of the machine that generated it).
fn source_name(input: &Path) -> String {
    if input.is_relative() {
        input.display().to_string()
    } else {
        input.file_name().map_or_else(
            || input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Writes `text` next to `out` and renames it over `out`, so a reader never sees half a file.
fn write_atomically(out: &Path, text: &str) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file path", out.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", out.display())
    })
}
