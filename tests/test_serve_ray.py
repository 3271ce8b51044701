"""``unitok serve --engine ray``: the bundled suite as a Ray Serve application on a local 2-CPU Ray
(pools ``default``, ``image`` and ``audio``, one replica each), answering ``unitok.Client``
exactly as the in-process API: ids byte for byte, decoded media bit for bit, the same error
answers (422 with the position, 409, 413) and the same streamed audio lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")

import unitok  # noqa: E402
from unitok.errors import ConfigError, TokenSequenceError  # noqa: E402
from unitok.serve import Client, ServeConfig  # noqa: E402
from test_serve import _audio, _free_port, _image, _same_parts, check_refusals, stream_case  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def url():
    import os
    import sys

    import ray
    from ray import serve

    from unitok.serve.ray_app import build_app

    path = os.pathsep.join(p for p in sys.path if p)   # the replicas import unitok and the test helpers alike
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        cfg = ServeConfig(max_batch=4, max_wait_ms=5, max_body_bytes=3_000_000, limits={"max_pixels": 65536})
        serve.run(build_app(cfg, replicas={"image": 1, "audio": 1}, cpus_per_replica=0.5), name="unitok",
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)   # as the replicas
    return unitok.load()


def test_mixed_requests_equal_in_process(url, tok):
    from concurrent.futures import ThreadPoolExecutor

    client = Client(url)
    health = client.health()
    assert health["ok"] and {w["pool"] for w in health["workers"]} == {"default", "image", "audio"}
    docs = ["plain text", b"bytes \xff not UTF-8", _image(1, 64, 64), _image(2, 64, 64), _image(3, 48, 80),
            _audio(1, 0.4), _audio(2, 0.3, rate=16000),
            ["An image:", _image(4, 32, 32), "and a sound:", _audio(4, 0.2)]]

    def one(doc):
        seq = client.encode(doc, bos=True, eos=True)
        return seq, client.decode(seq)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, docs))
    for doc, (seq, decoded) in zip(docs, answers):
        local = tok.encode(doc, bos=True, eos=True)
        assert seq == local
        assert _same_parts(decoded, tok.decode(local))
    assert client.space.fingerprint == tok.space.fingerprint
    assert b"unitok_requests" in client.metrics().encode()


def test_errors_and_stream(url, tok):
    client = Client(url, retries=0)
    check_refusals(client, tok)
    # streamed audio: the same samples as the in-process stream decoder for the same pushes
    lines, local, _, (head, body, width, levels) = stream_case(tok, 0.3)
    assert np.array_equal(np.concatenate(list(client.stream_audio(lines))), local)
    with pytest.raises(TokenSequenceError) as e:
        list(client.stream_audio([head, body[:levels + 3], body[levels + 4:]]))
    assert e.value.position == 1 + width + levels + 3


def test_replica_counts_are_checked():
    from unitok.serve.ray_app import parse_replicas

    assert parse_replicas("2") == 2
    assert parse_replicas("image=2,audio=0") == {"image": 2, "audio": 0}
    with pytest.raises(ConfigError, match="unknown pool"):
        parse_replicas("imagez=1")
    with pytest.raises(ConfigError, match="POOL=N"):
        parse_replicas("image:2")


def test_replicas_that_cannot_all_start_are_refused_with_the_way_out():
    """4 pools at 1 CPU each on a 2-CPU machine: Ray Serve would start two and wait for ever."""
    from unitok.serve.ray_app import check_fits

    with pytest.raises(ConfigError, match=r"4 model replicas .* ask Ray for 4 CPU.*has 2.*--cpus-per-replica 0\.5"):
        check_fits(1, 1.0, 0.0, {"CPU": 2.0})
    check_fits(1, 0.5, 0.0, {"CPU": 2.0})
    check_fits({"image": 0, "video": 0, "audio": 0}, 1.0, 0.0, {"CPU": 2.0})
    with pytest.raises(ConfigError, match="GPU.*--gpus-per-replica"):
        check_fits(1, 0.25, 1.0, {"CPU": 2.0})
