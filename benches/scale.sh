#!/usr/bin/env bash
# oiseau on a storage of years: ARCHIVES archives of PER_ARCHIVE replays each (default 2,000 x
# 5,000 = 10 M replays), on the local backend. Prints, for BINARY, the wall time and peak RSS of
# locate (warm manifest cache, then an empty work_dir), verify (shallow) and status, and serve's
# time to answer after start and its memory after answering requests.
#
#   benches/scale.sh [BINARY]      (default target/release/oiseau)
#
# The storage is built once (one real archive made by BINARY, then grown by scale-storage.py)
# and kept in target/bench/scale-ARCHIVESxPER_ARCHIVE for the next runs.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/oiseau}")
archives=${ARCHIVES:-2000}
per_archive=${PER_ARCHIVE:-5000}
root=target/bench/scale-${archives}x${per_archive}
if [ ! -e "$root/done" ]; then
    rm -rf "$root"
    mkdir -p "$root/temp" "$root/backup"
    python3 - "$root/temp" "$per_archive" <<'PY'
import os, sys
folder, count = sys.argv[1], int(sys.argv[2])
for i in range(1, count + 1):
    with open(os.path.join(folder, f"replay_{i}.osr"), "wb") as f:
        f.write(os.urandom(300 + i % 700))
PY
    : > "$root/backup/c14_index.txt"
    cat > "$root/settings.toml" <<SETTINGS
temp_dir = "temp"
work_dir = "work"
threshold = "1 KiB"
min_age = "0s"
[storage.local]
path = "backup"
[serve]
listen = "127.0.0.1:0"
SETTINGS
    "$binary" --config "$root/settings.toml" run
    python3 benches/scale-storage.py "$root/backup" "$archives"
    touch "$root/done"
fi
settings=$root/settings.toml
# A replay of the middle archive, and one of the last.
middle=$(( archives / 2 * per_archive + 17 ))
measure() { # label, command...
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$root/time" "$@" > /dev/null 2> "$root/stderr" || {
        echo "$label failed:" >&2
        cat "$root/stderr" >&2
        exit 1
    }
    read -r seconds kib < "$root/time"
    printf '%-42s %7.2f s %8.1f MiB\n' "$label" "$seconds" "$(echo "$kib / 1024" | bc -l)"
}
rm -rf "$root/work"
measure "locate (empty work_dir)" "$binary" --config "$settings" locate "$middle"
measure "locate (warm)" "$binary" --config "$settings" locate "$middle"
measure "locate (warm, again)" "$binary" --config "$settings" locate "$middle"
measure "verify (shallow)" "$binary" --config "$settings" verify
measure "status" "$binary" --config "$settings" status

# serve: time until a replay (of the one real archive: the clones hold other ids than their
# manifests say) is answered, then memory after 200 requests for replays all over.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$settings"
start=$(date +%s.%N)
"$binary" --config "$settings" serve 2> "$root/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf -o /dev/null "http://127.0.0.1:$port/replays/17"; do
    kill -0 $pid 2>/dev/null || { cat "$root/serve.log" >&2; exit 1; }
    sleep 0.02
done
ready=$(echo "$(date +%s.%N) - $start" | bc -l)
for i in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/replays/$(( (i * 49999) % (archives * per_archive) + 1 ))" || true
done
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill $pid
printf '%-42s %7.2f s\n' "serve: first replay answered after start" "$ready"
printf '%-42s %7.1f MiB (peak %.1f MiB)\n' "serve: memory after 200 requests" \
    "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
