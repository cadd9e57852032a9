#!/usr/bin/env python3
"""Grows a local oiseau storage holding one real archive (id 1) and its manifest into one of
ARCHIVES archives of the same replay count, as a storage of years looks: each clone is a hard
link of the real archive under its own name, with a manifest whose replay ids are shifted past
the previous archive's, and its line in c14_index.txt. What locate, verify (shallow), status and
serve read of a storage is then exactly what they would read of a real one.

    scale-storage.py STORAGE_DIR ARCHIVES
"""
import json
import os
import sys


def main():
    storage, archives = sys.argv[1], int(sys.argv[2])
    names = os.listdir(storage)
    archive = next(n for n in names if n.endswith("_replays_1.tar.gz"))
    with open(os.path.join(storage, archive + ".json")) as f:
        manifest = json.load(f)
    per_archive = len(manifest["replays"])
    stamp = int(archive.split("_")[0])
    lines = [f"1\t{manifest['replays'][-1][0]}\n"]
    base_ids = [r[0] for r in manifest["replays"]]
    offset = max(base_ids)
    for k in range(2, archives + 1):
        shift = (k - 1) * offset
        name = f"{stamp + k}_replays_{k}.tar.gz"
        target = os.path.join(storage, name)
        if not os.path.exists(target):
            os.link(os.path.join(storage, archive), target)
        manifest["archive_id"] = k
        manifest["archive_name"] = name
        manifest["replays"] = [[i + shift, s, h] for (i, (_, s, h)) in zip(base_ids, manifest["replays"])]
        with open(target + ".json.tmp", "w") as f:
            json.dump(manifest, f, separators=(",", ":"))
        os.rename(target + ".json.tmp", target + ".json")
        lines.append(f"{k}\t{max(base_ids) + shift}\n")
    with open(os.path.join(storage, "c14_index.txt"), "w") as f:
        f.writelines(lines)
    print(f"{archives} archives of {per_archive} replays in {storage}")


main()
