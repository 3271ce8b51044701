#!/usr/bin/env bash
# What a device call for these runs must carry, and whether it fits: prints the `carry` list (JSON,
# for the `run` call) and the bytes that would travel, the working tree (tracked files and
# untracked ones git does not ignore) plus the carried files, against the 64 MiB a call may take.
# Exits 1 when a packed file is missing or the trip is over the limit.
#   bash recipes/gpu/trip.sh audio audio_mpd video
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/gpu/runs.sh
[ $# -ge 1 ] || usage
carry=()
for name in "$@"; do
  settings "$name"
  carry+=("${carries[@]}")
done
mapfile -t carry < <(printf '%s\n' "${carry[@]}" | awk '!seen[$0]++')   # runs sharing data carry it once
if [ "${#carry[@]}" -gt 8 ]; then   # the most paths one call carries
  echo "${#carry[@]} paths to carry, over the 8 a call takes: run these in separate calls" >&2; exit 1
fi
missing=0
for path in "${carry[@]}"; do
  [ -e "$path" ] || { echo "missing: $path (recipes/gpu/README.md says how to pack it)" >&2; missing=1; }
done
[ "$missing" = 0 ] || exit 1
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 du -cb | tail -n 1 | cut -f1)
packed=$(du -cb "${carry[@]}" | tail -n 1 | cut -f1)
limit=$((64 * 1024 * 1024))
printf 'carry: ['; printf '"%s", ' "${carry[@]}" | sed 's/, $//'; printf ']\n'
awk -v t="$tree" -v p="$packed" -v l="$limit" \
  'BEGIN { printf "tree %.1f MB + carried %.1f MB = %.1f MB of %.1f MB (64 MiB): ", t / 1e6, p / 1e6, (t + p) / 1e6, l / 1e6 }'
if [ $((tree + packed)) -le "$limit" ]; then
  echo "fits, $(( (limit - tree - packed) / 1000 )) KB to spare"
else
  echo "OVER by $(( (tree + packed - limit) / 1000 )) KB: pack less (--train-mb)"; exit 1
fi
