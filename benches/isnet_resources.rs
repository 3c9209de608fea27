//! Where the benches find the npm package's ISNet (`resources.json`): `UNMARK_ISNET_RESOURCES`,
//! or the cache `scripts/setup.sh` installs it into.

use std::path::PathBuf;

/// `resources.json` of `@imgly/background-removal-data`.
pub(crate) fn resources() -> PathBuf {
    std::env::var("UNMARK_ISNET_RESOURCES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(
                ".cache/unmark/npm/node_modules/@imgly/background-removal-data/dist/resources.json",
            )
        })
}
