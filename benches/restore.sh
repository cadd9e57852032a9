#!/usr/bin/env bash
# Restoring 1 and 20 replays out of one 500 MB archive, per backend: the bytes read from the
# storage (as `oiseau restore` reports them) and the wall time, with the ranges of the manifest
# (format 3) and without them (the manifest made format 2: the archive is streamed until every
# asked replay is out, as for the original tool's archives).
#
#   benches/restore.sh [CORPUS_DIR]
#
# BACKENDS (default "local ftp s3 rclone"): ftp is pyftpdlib, s3 moto's server, rclone an
# on-the-fly FTP remote on the same pyftpdlib (all on loopback, from scripts/test's venv).
# CORPUS_DIR defaults to target/bench/corpus-500mb (see benches/backup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-target/bench/corpus-500mb}
backends=${BACKENDS:-local ftp s3 rclone}
venv=$PWD/target/test-tools/venv
[ -d "$corpus" ] || { echo "no corpus at $corpus: run benches/backup.sh once" >&2; exit 1; }
[ -x "$venv/bin/python" ] || { echo "run scripts/test once (it makes $venv)" >&2; exit 1; }
export PATH="$venv/bin:$PATH"
cargo build --release --quiet
oiseau=$PWD/target/release/oiseau
scratch=$(mktemp -d "${TMPDIR:-/tmp}/oiseau-restore.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$scratch"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ftp_port=$(free_port)
mkdir -p "$scratch/ftp"
python -m pyftpdlib -i 127.0.0.1 -p "$ftp_port" -w -d "$scratch/ftp" -u bench -P bench-password >/dev/null 2>&1 &
pids+=($!)
s3_port=$(free_port)
moto_server -H 127.0.0.1 -p "$s3_port" >/dev/null 2>&1 &
pids+=($!)
sleep 2
curl -s -X PUT "http://127.0.0.1:$s3_port/bench" >/dev/null
export FTP_PASSWORD=bench-password AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
export RCLONE_FTP_PASS=$(printf bench-password | rclone obscure -)

# Twenty replays spread over the archive, the last one near its end.
mapfile -t all < <(find "$corpus" -maxdepth 1 -name 'replay_*.osr' -printf '%f\n' | sed 's/replay_\(.*\)\.osr/\1/' | sort -n)
count=${#all[@]}
twenty=()
for k in $(seq 1 20); do twenty+=("${all[$(( k * (count - 1) / 20 ))]}"); done
one=("${all[$(( count / 2 ))]}")

printf '%-8s %-9s %8s %14s %10s\n' backend manifest replays "bytes read" wall
for backend in $backends; do
    dir=$scratch/deploy-$backend
    rm -rf "$dir"; mkdir -p "$dir"
    cp -al "$corpus" "$dir/temp"
    case $backend in
    local) table='[storage.local]\npath = "backup"' ;;
    ftp) rm -rf "$scratch/ftp"/*; table="[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://bench@127.0.0.1:$ftp_port/\"" ;;
    s3) table="[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"bench\"\nprefix = \"$RANDOM\"\nendpoint = \"http://127.0.0.1:$s3_port\"" ;;
    rclone) rm -rf "$scratch/ftp"/*; table="[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \":ftp,host=127.0.0.1,port=$ftp_port,user=bench:\"" ;;
    esac
    printf 'temp_dir = "temp"\nthreshold = 1\nmin_age = "0s"\nwork_dir = "work"\n%b\n' "$table" > "$dir/settings.toml"
    "$oiseau" --config "$dir/settings.toml" init >/dev/null 2>&1
    "$oiseau" --config "$dir/settings.toml" run >/dev/null 2>&1
    for manifest in ranges whole; do
        if [ "$manifest" = whole ]; then
            # The same archive with a format 2 manifest: on every backend, through oiseau's
            # own cache of manifests, which restore reads first.
            for cached in "$dir"/work/manifests/*.json; do
                python3 - "$cached" <<'PY'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
manifest.pop("ranges", None)
manifest["format"] = 2
json.dump(manifest, open(path, "w"))
PY
            done
        fi
        for ids in one twenty; do
            declare -n list=$ids
            rm -rf "$dir/restored"
            start=$(date +%s.%N)
            out=$("$oiseau" --config "$dir/settings.toml" restore --to "$dir/restored" "${list[@]}" 2>/dev/null)
            end=$(date +%s.%N)
            read_bytes=$(printf '%s\n' "$out" | sed -n 's/^read \([0-9]*\) bytes.*/\1/p')
            printf '%-8s %-9s %8s %14s %9.2fs\n' "$backend" "$manifest" "${#list[@]}" "$read_bytes" "$(echo "$end - $start" | bc)"
        done
    done
done
