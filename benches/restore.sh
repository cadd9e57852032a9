#!/usr/bin/env bash
# Restoring 1 and 20 replays out of one 500 MB archive, per backend: the bytes read from the
# storage (as `oiseau restore` reports them) and the wall time.
#
#   oiseau   the archive oiseau made: with the ranges of its manifest (format 3), then with
#            that manifest made format 2 (no ranges: the archive is streamed until every asked
#            replay is out)
#   seed     the same replays in one archive as the original tool wrote it (Python's tarfile,
#            "w:gz"), no manifest: before `oiseau index legacy` (streamed), and after (read
#            from access points); the row "index" is `oiseau index legacy` itself
#
#   benches/restore.sh [CORPUS_DIR]
#
# BACKENDS (default "local ftp s3 rclone"): ftp is pyftpdlib, s3 moto's server, rclone an
# on-the-fly FTP remote on the same pyftpdlib (all on loopback, from scripts/test's venv).
# CORPUS_DIR defaults to target/bench/corpus-500mb (see benches/backup.sh); the seed archive
# made from it is kept in target/bench/seed-500mb. OISEAU=path times another build.
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-target/bench/corpus-500mb}
backends=${BACKENDS:-local ftp s3 rclone}
venv=$PWD/target/test-tools/venv
[ -d "$corpus" ] || { echo "no corpus at $corpus: run benches/backup.sh once" >&2; exit 1; }
[ -x "$venv/bin/python" ] || { echo "run scripts/test once (it makes $venv)" >&2; exit 1; }
export PATH="$venv/bin:$PATH"
if [ -z "${OISEAU:-}" ]; then
    cargo build --release --quiet
    OISEAU=$PWD/target/release/oiseau
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/oiseau-restore.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$scratch"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Twenty replays spread over the archive, the last one near its end.
mapfile -t all < <(find "$corpus" -maxdepth 1 -name 'replay_*.osr' -printf '%f\n' | sed 's/replay_\(.*\)\.osr/\1/' | sort -n)
count=${#all[@]}
twenty=()
for k in $(seq 1 20); do twenty+=("${all[$(( k * (count - 1) / 20 ))]}"); done
one=("${all[$(( count / 2 ))]}")

# The seed archive: the corpus as the original tool archived its temp folder.
seed=target/bench/seed-500mb
seed_name=1571000000_replays_1.tar.gz
if [ ! -f "$seed/$seed_name" ]; then
    mkdir -p "$seed"
    python3 - "$corpus" "$seed/$seed_name.tmp" <<'PY'
import os, sys, tarfile
corpus, out = sys.argv[1:]
names = sorted(os.listdir(corpus), key=lambda n: int(n[len("replay_"):-len(".osr")]))
with tarfile.open(out, "w:gz") as tar:
    for name in names:
        tar.add(os.path.join(corpus, name), arcname=name)
PY
    mv "$seed/$seed_name.tmp" "$seed/$seed_name"
fi

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

# A deployment of `backend` in a new folder: its settings, and an empty storage.
deploy() {
    local backend=$1 dir=$2 table
    rm -rf "$dir"; mkdir -p "$dir"
    case $backend in
    local) table='[storage.local]\npath = "backup"' ;;
    ftp) rm -rf "$scratch/ftp"/*; table="[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://bench@127.0.0.1:$ftp_port/\"" ;;
    s3) prefix=p$RANDOM; table="[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"bench\"\nprefix = \"$prefix\"\nendpoint = \"http://127.0.0.1:$s3_port\"" ;;
    rclone) rm -rf "$scratch/ftp"/*; table="[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \":ftp,host=127.0.0.1,port=$ftp_port,user=bench:\"" ;;
    esac
    printf 'temp_dir = "temp"\nthreshold = 1\nmin_age = "0s"\nwork_dir = "work"\n%b\n' "$table" > "$dir/settings.toml"
}

# The storage's object `name` for `backend`: a local file (ftp, rclone and local), or an
# rclone path to moto's bucket.
object_path() {
    local backend=$1 dir=$2 name=$3
    case $backend in
    local) echo "$dir/backup/$name" ;;
    ftp|rclone) echo "$scratch/ftp/$name" ;;
    s3) echo ":s3:bench/$prefix/$name" ;;
    esac
}

s3_rclone() {
    RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT="http://127.0.0.1:$s3_port" \
        RCLONE_S3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_S3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
        rclone --quiet "$@"
}

put_object() {
    local target; target=$(object_path "$1" "$2" "$3")
    case $1 in
    s3) s3_rclone copyto "$4" "$target" ;;
    *) mkdir -p "$(dirname "$target")"; cp "$4" "$target" ;;
    esac
}

get_object() {
    local source; source=$(object_path "$1" "$2" "$3")
    case $1 in
    s3) s3_rclone cat "$source" ;;
    *) cat "$source" ;;
    esac
}

# Runs oiseau in `dir` and prints a row: what, replays, bytes read, wall time.
row() {
    local backend=$1 dir=$2 label=$3; shift 3
    rm -rf "$dir/restored"
    local start end out read_bytes
    start=$(date +%s.%N)
    out=$("$OISEAU" --config "$dir/settings.toml" "$@" 2>/dev/null)
    end=$(date +%s.%N)
    read_bytes=$(printf '%s\n' "$out" | sed -n 's/^read \([0-9]*\) bytes.*/\1/p; s/.*; read \([0-9.]* [KMG]*i*B\) in.*/\1/p' | head -1)
    printf '%-8s %-22s %8s %14s %9.2fs\n' "$backend" "$label" "$replays" "$read_bytes" "$(echo "$end - $start" | bc)"
}

restores() {
    local backend=$1 dir=$2 label=$3 ids
    for ids in one twenty; do
        declare -n list=$ids
        replays=${#list[@]}
        row "$backend" "$dir" "$label" restore --to "$dir/restored" "${list[@]}"
    done
}

printf '%-8s %-22s %8s %14s %10s\n' backend archive replays "bytes read" wall
for backend in $backends; do
    dir=$scratch/deploy-$backend
    deploy "$backend" "$dir"
    cp -al "$corpus" "$dir/temp"
    "$OISEAU" --config "$dir/settings.toml" init >/dev/null 2>&1
    "$OISEAU" --config "$dir/settings.toml" run >/dev/null 2>&1
    restores "$backend" "$dir" "oiseau, ranges"
    # The same archive with a format 2 manifest, on the storage and with no catalog kept.
    archive=$(ls "$dir/work/catalog" | sed -n 's/\.replays$//p' | head -1)
    get_object "$backend" "$dir" "$archive.json" | python3 -c '
import json, sys
manifest = json.load(sys.stdin)
manifest.pop("ranges", None)
manifest["format"] = 2
json.dump(manifest, sys.stdout)' > "$dir/format2.json"
    put_object "$backend" "$dir" "$archive.json" "$dir/format2.json"
    rm -rf "$dir/work/catalog"
    restores "$backend" "$dir" "oiseau, whole"

    deploy "$backend" "$dir"
    printf '1\t%s\r\n' "${all[$(( count - 1 ))]}" > "$dir/index"
    put_object "$backend" "$dir" "$seed_name" "$seed/$seed_name"
    put_object "$backend" "$dir" c14_index.txt "$dir/index"
    restores "$backend" "$dir" "seed, before index"
    replays=$count
    row "$backend" "$dir" "seed, index legacy" index legacy
    restores "$backend" "$dir" "seed, after index"
done
