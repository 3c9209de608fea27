//! `unmark profile learn`: a watermark profile from a folder of images that share one mark,
//! or from a logo and an opacity; `remove-watermark --profile FILE` uses it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use unmark_stages::decode::{Limits, decode};
use unmark_stages::profile;

use crate::config::Config;

/// What `unmark profile` does.
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Learns the watermark that the images in DIR share (3 or more, one size, the mark in
    /// one place), or makes a profile from --logo and --opacity.
    Learn {
        /// Folder of watermarked images (not with --logo).
        dir: Option<PathBuf>,
        /// A logo image: its alpha channel (or, without one, its brightness) is the mark.
        #[arg(long, requires = "opacity", conflicts_with = "dir")]
        logo: Option<PathBuf>,
        /// The logo's opacity, above 0 and at most 1.
        #[arg(long)]
        opacity: Option<f32>,
        /// Where to write the profile (JSON).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs one `unmark profile` command.
pub(crate) fn run(config: &Config, command: ProfileCommand) -> Result<ExitCode> {
    let ProfileCommand::Learn {
        dir,
        logo,
        opacity,
        output,
    } = command;
    let limits = Limits::from(&config.options().decode);
    let read = |path: &PathBuf| -> Result<unmark_stages::Raster> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(decode(&bytes, &limits, &path.display().to_string())?.raster)
    };
    let made = match (dir, logo) {
        (_, Some(logo)) => profile::from_logo(&read(&logo)?, opacity.unwrap_or(1.0))?,
        (Some(dir), None) => {
            let images = crate::batch::files_in(&dir)?
                .iter()
                .map(read)
                .collect::<Result<Vec<_>>>()?;
            profile::learn(&images)?
        }
        (None, None) => bail!("give a folder of images that share a watermark, or --logo"),
    };
    std::fs::write(&output, made.to_json())
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {}: a {}x{} mark at ({}, {}), mean alpha {:.2}",
        output.display(),
        made.width,
        made.height,
        made.origin.0,
        made.origin.1,
        made.mean_alpha()
    );
    Ok(ExitCode::SUCCESS)
}
