"""The fuzz worker (``robustness.py`` starts it): builds each case from (seed, category, index),
runs it and answers with its outcome, one JSON line per case.

    python benchmarks/fuzz_worker.py --seed SEED --work DIR

Requests come on stdin as ``{"category": ..., "index": ...}`` lines; the first line out is
``{"ready": true}``, then one ``{"status": ..., "detail": ..., "lost": ...}`` per request. What
libraries print goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fuzz_common import ORDER, Bad, Context, case_rng, describe_error
from fuzz_hostile import (containment_case, damaged_json_case, hostile_records_case, special_files_case,
                          tar_shards_case, unclean_failures_case)
from fuzz_media import crafted_case, file_case, items_case
from fuzz_storage import checkpoint_case, dataset_case, manifest_case, tokenize_case
from fuzz_tokens import lenient_case, strict_case, truncation_case


def selftest_case(ctx: Context, rng, index: int):
    """The harness's own test (``run({"selftest": 5})``): a hang, a memory blow-up, a dying worker,
    a crash and a success, in that order."""
    if index == 0:
        time.sleep(10**6)
    if index == 1:
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
            hog[-1][::4096] = b"x" * len(range(0, 64 << 20, 4096))
    if index == 2:
        os._exit(3)
    if index == 3:
        raise KeyError("a bug")
    return "ok", "", 0


CASES = {
    "image-files": file_case("image"), "video-files": file_case("video"), "audio-files": file_case("audio"),
    "crafted-files": crafted_case, "items": items_case, "tokens-strict": strict_case,
    "tokens-lenient": lenient_case, "truncation": truncation_case, "checkpoints": checkpoint_case,
    "manifests": manifest_case, "datasets": dataset_case, "tokenize": tokenize_case,
    "hostile-records": hostile_records_case, "tar-shards": tar_shards_case, "special-files": special_files_case,
    "damaged-json": damaged_json_case, "containment": containment_case, "unclean-failures": unclean_failures_case,
    "selftest": selftest_case,
}
assert tuple(CASES) == ORDER, "a case per category, in the order that seeds them"


def worker_main(work: Path, seed: int) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # what libraries print goes to the log, not into the protocol
    ctx = None      # built by the first case that needs it (the harness's self-test does not)
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        category, index = req["category"], req["index"]
        rng = case_rng(seed, category, index)
        try:
            if ctx is None and category != "selftest":
                ctx = Context(work, seed)
            status, detail, lost = CASES[category](ctx, rng, index)
        except Bad as e:
            status, detail, lost = "crash", f"check failed: {e}", 0
        except Exception as e:   # noqa: BLE001 - the point: anything not a unitok error is a crash
            status, detail, lost = "crash", describe_error(e), 0
        proto.write(json.dumps({"status": status, "detail": detail, "lost": lost}) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True, help="folder for seed files, suites and cases")
    args = parser.parse_args(argv)
    worker_main(args.work, args.seed)


if __name__ == "__main__":
    main()
