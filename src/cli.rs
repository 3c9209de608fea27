//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use unmark_schemas::SubmitParams;
use unmark_schemas::background::{BackgroundMode, BackgroundParams, parse_color};
use unmark_schemas::params::{Engine, OutputFormat, PluginCall, ReturnKind, WatermarkOptions};

use crate::config::Config;

/// Removes watermarks from images: a service (`serve`) or a one-shot command.
#[derive(Debug, Parser)]
#[command(name = "unmark", version, about)]
pub(crate) struct Cli {
    /// Configuration file (TOML); `UNMARK_*` variables override it.
    #[arg(long, global = true, env = "UNMARK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP API with every stage in this process (embedded mode).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        bind: Option<String>,
        /// Directory for unmark's state.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// NATS server with JetStream; without it everything runs in this process.
        #[arg(long)]
        nats: Option<String>,
        /// Stages to run in this process: all, none, or a comma-separated list.
        #[arg(long, default_value = "all")]
        stages: String,
    },
    /// Runs one stage as a worker over NATS JetStream (scale it by starting more).
    Worker {
        /// NATS server with JetStream.
        #[arg(long)]
        nats: Option<String>,
        /// The stage: decode, prescale, detect, inpaint, encode, `plugin` (every installed
        /// plugin) or `plugin:<name>` (one plugin's steps).
        #[arg(long)]
        stage: String,
        /// Messages this worker processes at once (default: one per CPU core).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Directory for unmark's state (blobs are shared through `<data-dir>/blobs`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Removes the watermark from one image, or from every image in a folder.
    RemoveWatermark(Box<RemoveArgs>),
    /// Removes the background from one image, or from every image in a folder (ISNet, the
    /// network of rembg's `isnet-general-use`; install it once with `unmark models import`).
    RemoveBackground(Box<BackgroundArgs>),
    /// Imports and checks neural network weights.
    Models {
        #[command(subcommand)]
        command: crate::models::ModelsCommand,
    },
    /// Learns watermark profiles (the same mark on many images).
    Profile {
        #[command(subcommand)]
        command: crate::profile::ProfileCommand,
    },
    /// Installs, lists and removes WASM plugins (filters and mask detectors).
    Plugins {
        #[command(subcommand)]
        command: crate::plugins::PluginsCommand,
    },
    /// Creates, lists and revokes API keys, and sets their plans.
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// Checks the configuration (file and `UNMARK_*` environment) and says what it selects;
    /// connects to nothing. Exits 2 on an error.
    CheckConfig,
    /// Writes the JSON Schemas of the wire types.
    Schemas {
        /// Output folder.
        #[arg(long, default_value = "schemas/json")]
        out: PathBuf,
    },
}

/// Arguments of `remove-watermark`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// An image file, or a folder of images.
    pub(crate) input: PathBuf,
    /// Mask image (white = remove); in folder mode, one mask for every image.
    #[arg(long, conflicts_with = "mask_dir")]
    pub(crate) mask: Option<PathBuf>,
    /// Folder of masks matched to the images by file name (or by stem, any extension).
    #[arg(long)]
    pub(crate) mask_dir: Option<PathBuf>,
    /// Output file, or output folder in folder mode.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Inpainting engine.
    #[arg(long)]
    pub(crate) engine: Option<String>,
    /// Inpainting radius in pixels.
    #[arg(long)]
    pub(crate) radius: Option<u32>,
    /// Grow the mask by this many pixels.
    #[arg(long)]
    pub(crate) mask_dilate: Option<u32>,
    /// With no mask: the detector's probability threshold (0 to 1).
    #[arg(long)]
    pub(crate) threshold: Option<f32>,
    /// `image` (default) or `mask`: write the mask that was removed instead, to review a
    /// detection.
    #[arg(long = "return")]
    pub(crate) returns: Option<String>,
    /// Output format: png, jpeg or webp (default: the input's).
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// JPEG quality.
    #[arg(long)]
    pub(crate) quality: Option<u8>,
    /// Longest side of the working image.
    #[arg(long)]
    pub(crate) work_max_side: Option<u32>,
    /// Keep the EXIF block.
    #[arg(long)]
    pub(crate) keep_metadata: bool,
    /// Images processed at once in folder mode (default: one per CPU core).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// WASM filters to run before pre-scale: `name[@version]` list, or JSON
    /// (`[{"plugin": "blur@1", "params": {"sigma": 2}}]`).
    #[arg(long)]
    pub(crate) pre: Option<String>,
    /// A WASM mask detector (`name[@version]` or JSON); makes --mask optional.
    #[arg(long)]
    pub(crate) detector: Option<String>,
    /// WASM filters to run on the finished image, like --pre.
    #[arg(long)]
    pub(crate) post: Option<String>,
    /// A watermark profile (`unmark profile learn`): the mark is found in each image and
    /// unblended; makes --mask optional.
    #[arg(long)]
    pub(crate) profile: Option<PathBuf>,
}

/// Arguments of `remove-background`.
#[derive(Debug, Args)]
pub(crate) struct BackgroundArgs {
    /// An image file, or a folder of images.
    pub(crate) input: PathBuf,
    /// Output file, or output folder in folder mode.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// `rgba` (default: transparent background), `mask` (the alpha only) or `composite`
    /// (over --bg-color, --bg-image or --bg-blur; white by default).
    #[arg(long)]
    pub(crate) mode: Option<String>,
    /// Background colour: #RRGGBB, #RRGGBBAA or r,g,b,a.
    #[arg(long)]
    pub(crate) bg_color: Option<String>,
    /// Blur the photo's own background by this radius instead of removing it.
    #[arg(long)]
    pub(crate) bg_blur: Option<u32>,
    /// An image to put behind the subject (scaled to cover).
    #[arg(long)]
    pub(crate) bg_image: Option<PathBuf>,
    /// Crop to the subject.
    #[arg(long)]
    pub(crate) crop: bool,
    /// Pixels kept around the subject with --crop.
    #[arg(long)]
    pub(crate) crop_margin: Option<u32>,
    /// Harden the mask (rembg's post_process_mask).
    #[arg(long)]
    pub(crate) post_process_mask: bool,
    /// Refine the edge alpha against the photo (rembg's alpha_matting).
    #[arg(long)]
    pub(crate) alpha_matting: bool,
    /// Alpha matting: sure-foreground threshold (rembg's af, 0-255).
    #[arg(long)]
    pub(crate) af: Option<u8>,
    /// Alpha matting: sure-background threshold (rembg's ab, 0-255).
    #[arg(long)]
    pub(crate) ab: Option<u8>,
    /// Alpha matting: erosion size (rembg's ae).
    #[arg(long)]
    pub(crate) ae: Option<u32>,
    /// Estimate the subject's colours at its edges (no halo of the old background).
    #[arg(long)]
    pub(crate) decontaminate: bool,
    /// Keep the alpha channel of an opaque result (a colour background); without it such an
    /// image is written as RGB.
    #[arg(long)]
    pub(crate) keep_alpha: bool,
    /// Output format: png (default), webp (lossless) or jpeg (flattened onto white).
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Longest side of the working image the network's input is made from.
    #[arg(long)]
    pub(crate) work_max_side: Option<u32>,
    /// Images processed at once in folder mode (default: one per CPU core).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
}

impl BackgroundArgs {
    /// The settings of this run.
    pub(crate) fn params(&self) -> Result<BackgroundParams> {
        Ok(BackgroundParams {
            mode: self
                .mode
                .as_deref()
                .map(BackgroundMode::parse)
                .transpose()?,
            bg_color: self
                .bg_color
                .as_deref()
                .map(|c| parse_color("bg-color", c))
                .transpose()?,
            bg_blur: self.bg_blur,
            crop: self.crop.then_some(true),
            crop_margin: self.crop_margin,
            post_process_mask: self.post_process_mask.then_some(true),
            alpha_matting: self.alpha_matting.then_some(true),
            foreground_threshold: self.af,
            background_threshold: self.ab,
            erode_size: self.ae,
            decontaminate: self.decontaminate.then_some(true),
            keep_alpha: self.keep_alpha.then_some(true),
            format: self
                .format
                .as_deref()
                .map(OutputFormat::parse)
                .transpose()?,
            work_max_side: self.work_max_side,
        })
    }
}

impl RemoveArgs {
    /// The options of this run over the configured defaults.
    pub(crate) fn options(&self, defaults: WatermarkOptions) -> Result<WatermarkOptions> {
        let params = SubmitParams {
            engine: self.engine.as_deref().map(Engine::parse).transpose()?,
            radius: self.radius,
            mask_dilate: self.mask_dilate,
            threshold: self.threshold,
            returns: self.returns.as_deref().map(ReturnKind::parse).transpose()?,
            format: self
                .format
                .as_deref()
                .map(OutputFormat::parse)
                .transpose()?,
            quality: self.quality,
            work_max_side: self.work_max_side,
            keep_metadata: self.keep_metadata.then_some(true),
            pre: plugin_calls("pre", self.pre.as_deref())?,
            detector: match plugin_calls("detector", self.detector.as_deref())?.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                _ => anyhow::bail!("--detector names one mask plugin"),
            },
            post: plugin_calls("post", self.post.as_deref())?,
        };
        Ok(params.apply(&defaults)?)
    }
}

fn plugin_calls(flag: &str, text: Option<&str>) -> Result<Vec<PluginCall>> {
    Ok(match text {
        Some(text) => PluginCall::parse_list(flag, text)?,
        None => Vec::new(),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::Serve {
            bind,
            data_dir,
            nats,
            stages,
        } => {
            if let Some(bind) = bind {
                config.server.bind = bind;
            }
            if let Some(dir) = data_dir {
                config.server.data_dir = dir;
            }
            if nats.is_some() {
                config.nats.url = nats;
            }
            runtime()?.block_on(crate::serve::serve(config, &stages))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
            nats,
            stage,
            concurrency,
            data_dir,
        } => {
            if nats.is_some() {
                config.nats.url = nats;
            }
            if config.nats.url.is_none() {
                anyhow::bail!("a worker needs a broker: pass --nats URL or set UNMARK_NATS_URL");
            }
            if let Some(dir) = data_dir {
                config.server.data_dir = dir;
            }
            if let Some(n) = concurrency {
                config.runner.concurrency = n;
            }
            runtime()?.block_on(crate::serve::worker(config, &stage))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RemoveWatermark(args) => runtime()?.block_on(crate::batch::run(&config, &args)),
        Command::RemoveBackground(args) => {
            runtime()?.block_on(crate::batch::run_background(&config, &args))
        }
        Command::Models { command } => crate::models::run(&config, command),
        Command::Keys { command } => runtime()?.block_on(crate::keys::run(&config, command)),
        Command::Profile { command } => crate::profile::run(&config, command),
        Command::Plugins { command } => runtime()?.block_on(crate::plugins::run(&config, command)),
        Command::CheckConfig => {
            check(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schemas { out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for (name, text) in unmark_schemas::json_schemas() {
                let path = out.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `check-config` prints: every address the configuration selects, secrets hidden.
fn check(config: &Config) -> Result<()> {
    let blobs = config.blob_config();
    blobs.validate().context("invalid [blobs] url")?;
    let database = config.database_url();
    unmark_jobs::JobStore::check_url(&database).context("invalid [database] url")?;
    let broker = match config.nats.url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => format!("NATS JetStream at {url}"),
        None => "in-process (embedded)".to_owned(),
    };
    let database = match database.split_once('@') {
        Some((_, host)) => format!("{}://…@{host}", database.split("://").next().unwrap_or("")),
        None => database,
    };
    println!("configuration ok");
    println!("  broker:   {broker}");
    println!("  database: {database}");
    println!("  blobs:    {}", blobs.url);
    println!("  http:     {}", config.server.bind);
    Ok(())
}
