//! `unmark remove-watermark` and `unmark remove-background`: one file, or a folder in
//! parallel, through the same stage pipelines as the service (embedded, in this process).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use unmark_broker::{JobClient, JobOutcome};
use unmark_schemas::{JobId, Step, pipeline};

use crate::cli::{BackgroundArgs, RemoveArgs};
use crate::config::Config;

/// The stages a one-shot watermark run starts (not the background pipeline's network).
const WATERMARK_WORK: &str = "decode,prescale,detect,inpaint,encode,plugin";

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

/// What every job of a run shares: the pipeline, its steps, and inputs besides the image.
struct Template {
    pipeline: &'static str,
    steps: Vec<Step>,
    extra: Vec<(&'static str, Bytes)>,
}

async fn process(client: &JobClient, item: &Item, job: &Template, n: usize) -> Result<PathBuf> {
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
    inputs.extend(job.extra.iter().cloned());
    let id = JobId::new(format!("cli-{}-{n}", std::process::id()))?;
    let mut running = client
        .submit(id.clone(), job.pipeline, job.steps.clone(), inputs)
        .await?;
    let outcome = running.wait(Duration::from_secs(3600)).await;
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

/// The items of a run over `input` (a file or a folder) into `output`; `mask` gives each
/// image's mask.
fn plan(input: &Path, output: &Path, mask: impl Fn(&Path) -> Option<PathBuf>) -> Result<Vec<Item>> {
    if !input.is_dir() {
        return Ok(vec![Item {
            input: input.to_owned(),
            mask: mask(input),
            output: output.to_owned(),
            folder_mode: false,
        }]);
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create output folder {}", output.display()))?;
    let items = files_in(input)?
        .into_iter()
        .map(|input| {
            let stem = input.file_stem().unwrap_or_default().to_owned();
            Item {
                output: output.join(stem),
                mask: mask(&input),
                input,
                folder_mode: true,
            }
        })
        .collect();
    Ok(items)
}

/// Runs `remove-watermark`; exits 1 when any image failed.
pub(crate) async fn run(config: &Config, args: &RemoveArgs) -> Result<ExitCode> {
    let mut options = args.options(config.options())?;
    if args.input.is_file() && args.mask_dir.is_some() {
        bail!("--mask-dir needs a folder as input");
    }
    let items = plan(&args.input, &args.output, |image| match &args.mask_dir {
        Some(dir) => mask_for(image, dir),
        None => args.mask.clone(),
    })?;
    let (pipeline, transport) =
        crate::embedded::start_all(config, WATERMARK_WORK, crate::embedded::Blobs::Memory).await?;
    unmark_plugins::resolve(&transport.plugins.registry, &mut options).await?;
    let mut extra = Vec::new();
    if let Some(path) = &args.profile {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        unmark_stages::profile::Profile::from_json(&bytes)
            .with_context(|| format!("{} is not a watermark profile", path.display()))?;
        extra.push(("profile", Bytes::from(bytes)));
    }
    let job = Template {
        pipeline: pipeline::REMOVE_WATERMARK,
        steps: pipeline::remove_watermark(&options),
        extra,
    };
    run_items(
        &pipeline.client,
        &items,
        &job,
        args.jobs,
        &args.input,
        &args.output,
    )
    .await
}

/// The stages a one-shot background run starts.
const BACKGROUND_WORK: &str = "decode,prescale,segment,composite,encode";

/// Runs `remove-background`; exits 1 when any image failed.
pub(crate) async fn run_background(config: &Config, args: &BackgroundArgs) -> Result<ExitCode> {
    let options = args.params()?.apply(&config.background_options())?;
    let items = plan(&args.input, &args.output, |_| None)?;
    let mut extra = Vec::new();
    if let Some(path) = &args.bg_image {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read background image {}", path.display()))?;
        extra.push(("background_input", Bytes::from(bytes)));
    }
    let (pipeline, _transport) =
        crate::embedded::start_all(config, BACKGROUND_WORK, crate::embedded::Blobs::Memory).await?;
    let job = Template {
        pipeline: pipeline::REMOVE_BACKGROUND,
        steps: pipeline::remove_background(&options),
        extra,
    };
    run_items(
        &pipeline.client,
        &items,
        &job,
        args.jobs,
        &args.input,
        &args.output,
    )
    .await
}

/// Runs every item, at most `jobs` at once, with a progress bar and a summary in folder
/// mode; exits 1 when any image failed.
async fn run_items(
    client: &JobClient,
    items: &[Item],
    job: &Template,
    jobs: Option<usize>,
    input: &Path,
    output: &Path,
) -> Result<ExitCode> {
    if items.is_empty() {
        bail!("no files in {}", input.display());
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
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
                let bar = &bar;
                async move {
                    let result = process(client, item, job, n).await;
                    bar.inc(1);
                    (item.input.clone(), result)
                }
            })
            .buffer_unordered(jobs.unwrap_or(cores).max(1))
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
            output.display()
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
