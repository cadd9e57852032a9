#!/usr/bin/env bash
# One whole `oiseau run` on the local backend over a copy of a replay corpus, set-up included:
# for pairing two builds with a timing tool, e.g.
#
#   farm-bench --vs 'benches/pack-run.sh OTHER_BINARY CORPUS' -- benches/pack-run.sh BINARY CORPUS
#
# The corpus is hard-linked into a fresh temp folder (the run removes the links it archived, never
# the corpus), packed into a fresh local storage, and everything is removed afterwards.
set -euo pipefail
binary=$1
corpus=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -al "$corpus" "$scratch/temp"
mkdir "$scratch/backup"
: > "$scratch/backup/c14_index.txt"
cat > "$scratch/settings.toml" <<SETTINGS
temp_dir = "temp"
work_dir = "work"
threshold = "1 KiB"
min_age = "0s"
[storage.local]
path = "backup"
SETTINGS
"$binary" --config "$scratch/settings.toml" run
