//! unmark's integration tests: one binary, one module per area.

mod api_errors;
mod api_jobs;
mod api_keys;
mod api_limits;
mod api_watermark;
mod background;
mod cli_batch;
mod common;
mod deploy;
mod detection;
mod group;
mod jobs_store;
mod nats;
mod openapi;
mod pipeline;
mod plugins;
mod postgres;
mod procs;
mod profiles;
mod reference_filters;
mod restore;
mod s3;
mod scaleout;
mod schemas_drift;
mod stage_runner;
