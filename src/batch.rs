//! `unmark remove-watermark`: one file, or a folder in parallel, through the same stage
//! pipeline as the service (embedded, in this process).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use unmark_broker::{JobClient, JobOutcome};
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{JobId, pipeline};

use crate::cli::RemoveArgs;
use crate::config::Config;

/// One image to process.
struct Item {
    input: PathBuf,
    mask: Option<PathBuf>,
    /// Output path without extension in folder mode; the exact path in file mode.
    output: PathBuf,
    folder_mode: bool,
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        _ => "png",
    }
}

async fn process(
    client: &JobClient,
    item: &Item,
    options: &WatermarkOptions,
    profile: Option<&Bytes>,
    n: usize,
) -> Result<PathBuf> {
    let image = tokio::fs::read(&item.input)
        .await
        .with_context(|| format!("cannot read {}", item.input.display()))?;
    let mut inputs = vec![("input", Bytes::from(image))];
    if let Some(mask) = &item.mask {
        let bytes = tokio::fs::read(mask)
            .await
            .with_context(|| format!("cannot read mask {}", mask.display()))?;
        inputs.push(("mask_input", Bytes::from(bytes)));
    }
    if let Some(profile) = profile {
        inputs.push(("profile", profile.clone()));
    }
    let id = JobId::new(format!("cli-{}-{n}", std::process::id()))?;
    let mut job = client
        .submit(
            id.clone(),
            pipeline::REMOVE_WATERMARK,
            pipeline::remove_watermark(options),
            inputs,
        )
        .await?;
    let outcome = job.wait(Duration::from_secs(3600)).await;
    let written = match outcome? {
        JobOutcome::Succeeded {
            result,
            content_type,
            ..
        } => {
            let bytes = client.fetch(&result).await?;
            let path = if item.folder_mode {
                item.output.with_extension(extension(&content_type))
            } else {
                item.output.clone()
            };
            tokio::fs::write(&path, &bytes)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        }
        JobOutcome::Failed {
            reason, message, ..
        } => Err(anyhow::anyhow!("{message} ({})", reason.as_str())),
    };
    client.discard(&id).await?;
    written
}

pub(crate) fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The mask for `image` in `mask_dir`: the same file name, else the same stem.
fn mask_for(image: &Path, mask_dir: &Path) -> Option<PathBuf> {
    let same = mask_dir.join(image.file_name()?);
    if same.is_file() {
        return Some(same);
    }
    let stem = image.file_stem()?;
    files_in(mask_dir)
        .ok()?
        .into_iter()
        .find(|m| m.file_stem() == Some(stem))
}

fn plan(args: &RemoveArgs) -> Result<Vec<Item>> {
    if !args.input.is_dir() {
        if args.mask_dir.is_some() {
            bail!("--mask-dir needs a folder as input");
        }
        return Ok(vec![Item {
            input: args.input.clone(),
            mask: args.mask.clone(),
            output: args.output.clone(),
            folder_mode: false,
        }]);
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create output folder {}", args.output.display()))?;
    let items = files_in(&args.input)?
        .into_iter()
        .map(|input| {
            let mask = match &args.mask_dir {
                Some(dir) => mask_for(&input, dir),
                None => args.mask.clone(),
            };
            let stem = input.file_stem().unwrap_or_default().to_owned();
            Item {
                output: args.output.join(stem),
                input,
                mask,
                folder_mode: true,
            }
        })
        .collect();
    Ok(items)
}

/// Runs the command; exits 1 when any image failed.
pub(crate) async fn run(config: &Config, args: &RemoveArgs) -> Result<ExitCode> {
    let mut options = args.options(config.options())?;
    let items = plan(args)?;
    if items.is_empty() {
        bail!("no files in {}", args.input.display());
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (pipeline, transport) =
        crate::embedded::start_all(config, "all", crate::embedded::Blobs::Memory).await?;
    unmark_plugins::resolve(&transport.plugins.registry, &mut options).await?;
    let profile = match &args.profile {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read profile {}", path.display()))?;
            unmark_stages::profile::Profile::from_json(&bytes)
                .with_context(|| format!("{} is not a watermark profile", path.display()))?;
            Some(Bytes::from(bytes))
        }
        None => None,
    };
    let client = pipeline.client.clone();
    let folder_mode = items[0].folder_mode;
    let bar = if folder_mode {
        let bar = ProgressBar::new(items.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let results: Vec<(PathBuf, Result<PathBuf>)> =
        futures_util::stream::iter(items.iter().enumerate())
            .map(|(n, item)| {
                let (client, options, bar, profile) = (&client, &options, &bar, profile.as_ref());
                async move {
                    let result = process(client, item, options, profile, n).await;
                    bar.inc(1);
                    (item.input.clone(), result)
                }
            })
            .buffer_unordered(args.jobs.unwrap_or(cores).max(1))
            .collect()
            .await;
    bar.finish_and_clear();
    let failed: Vec<_> = results
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| (p, e)))
        .collect();
    for (path, error) in &failed {
        eprintln!("failed: {}: {error:#}", path.display());
    }
    if folder_mode {
        println!(
            "{} images: {} succeeded, {} failed; results in {}",
            results.len(),
            results.len() - failed.len(),
            failed.len(),
            args.output.display()
        );
    } else if let Some((_, Ok(path))) = results.first() {
        println!("wrote {}", path.display());
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
