"""``unitok serve``: a real server on 127.0.0.1 (a free port) with the bundled suite and two
worker processes, under bounded concurrent load; every answer is checked against the in-process
API byte for byte. Error paths: 400, 409, 413, 422 (with the position), 429 under a flood and
recovery after it, a worker killed mid-load. The whole module ends itself well within 60 s."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import unitok  # noqa: E402
from unitok.errors import ConfigError, MediaError, TokenSequenceError  # noqa: E402
from unitok.serve import Client, MediaLimitError, ServiceError  # noqa: E402

pytestmark = pytest.mark.timeout(60)

MAX_QUEUE = 12
BODY_CAP = 3_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "unitok.cli", "serve", "--port", str(port), "--workers", "2",
                             "--max-batch", "4", "--max-wait-ms", "5", "--max-queue", str(MAX_QUEUE),
                             "--max-body-bytes", str(BODY_CAP), "--limit", "max_pixels=65536"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 45
    while True:
        try:
            if Client(url).health()["ok"]:
                break
        except ServiceError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)   # as the workers: ids do not depend on thread counts
    return unitok.load()


def _image(seed: int, h: int, w: int) -> unitok.Image:
    g = torch.Generator().manual_seed(seed)
    return unitok.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))


def _audio(seed: int, seconds: float, rate: int = 24000) -> unitok.Audio:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * torch.pi * (220 + 40 * seed) * t) + 0.05 * torch.rand(len(t), generator=g)
    return unitok.Audio(wave[None].clamp(-1, 1).float(), rate)


def _same_parts(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if type(x) is not type(y):
            return False
        if isinstance(x, str):
            ok = x == y
        elif isinstance(x, unitok.Image):
            ok = torch.equal(x.pixels, y.pixels)
        elif isinstance(x, unitok.Audio):
            ok = x.sample_rate == y.sample_rate and torch.equal(x.samples, y.samples)
        else:
            ok = x.fps == y.fps and torch.equal(x.frames, y.frames)
        if not ok:
            return False
    return True


def test_mixed_load_equals_in_process(server, tok, tmp_path):
    png = tmp_path / "pic.png"
    _image(9, 40, 56).save(png)
    video = unitok.Video(torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(3)), 8)
    docs = [
        "A caption in plain text.",
        b"bytes \xff\xfe that are not UTF-8",
        _image(1, 64, 64), _image(2, 64, 64), _image(3, 48, 80),
        _audio(1, 0.4), _audio(2, 0.4), _audio(3, 0.3, rate=16000),
        ["An image:", _image(4, 32, 32), "and a sound:", _audio(4, 0.2), "the end"],
        ["two", "text parts"],
        [png, "a file sent by the client"],
        video,
    ] * 2
    client = Client(server)

    def one(doc):
        seq = client.encode(doc, bos=True, eos=True)
        return seq, client.decode(seq)

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:   # four concurrent clients
        answers = list(pool.map(one, docs))
    elapsed = time.perf_counter() - started
    for doc, (seq, decoded) in zip(docs, answers):
        local = tok.encode(doc, bos=True, eos=True)
        assert seq == local                                       # ids, groups, spans, fingerprint
        assert _same_parts(decoded, tok.decode(local))            # text, pixels and samples bit for bit
        assert decoded.repairs == []
    lenient = client.decode(answers[2][0].ids[:-40], strict=False)
    assert lenient.repairs == tok.decode(answers[2][0].ids[:-40], strict=False).repairs
    assert elapsed < 30
    assert client.space.fingerprint == tok.space.fingerprint


def stream_case(tok, seconds: float):
    """An audio segment as stream lines (its begin token and header, then 5 frames a line) -> the
    lines, the in-process stream decoder's samples for those pushes, the offline decode's, and
    (head, body, header width, levels)."""
    seq = tok.encode(_audio(7, seconds))
    codec = tok.media["audio"]
    width, levels = sum(codec.header_widths()), codec.levels
    head, body, end = seq.ids[:1 + width], seq.ids[1 + width:-1], seq.ids[-1:]
    frames = len(body) // levels
    cuts = list(range(0, frames, 5)) + [frames]
    lines = [head] + [body[a * levels:b * levels] for a, b in zip(cuts, cuts[1:])]
    lines[-1] = np.concatenate([lines[-1], end])
    offline = tok.decode(seq)[0].samples[0].numpy()
    dec = codec.stream_decoder()
    codes = tok.space.media_codes("audio", body)[1].reshape(frames, levels).T
    local = [dec.push(codes[:, a:b]).numpy() for a, b in zip(cuts, cuts[1:])] + [dec.flush().numpy()]
    return lines, np.concatenate(local)[:len(offline)], offline, (head, body, width, levels)


def check_refusals(client, tok) -> None:
    """422 with the position, 409, 413 (a media limit and the body cap), as a server started with
    --limit max_pixels=65536 and a 3 MB body cap answers them."""
    seq = tok.encode(["text", _image(5, 32, 32)])
    with pytest.raises(TokenSequenceError) as remote:             # 422 with the position
        client.decode(seq.ids[:-2])
    with pytest.raises(TokenSequenceError) as local:
        tok.decode(seq.ids[:-2])
    assert remote.value.position == local.value.position is not None
    with pytest.raises(ConfigError, match="token space"):         # 409
        client.decode(seq.ids, fingerprint="f" * 64)
    with pytest.raises(MediaLimitError, match="MediaLimits.max_pixels"):   # 413: the server's --limit
        client.encode(_image(6, 300, 300))
    with pytest.raises(MediaLimitError, match="max-body-bytes"):  # 413: the body cap
        client.encode(_audio(6, 30.0))


def test_stream_audio_equals_offline_decode(server, tok):
    client = Client(server)
    lines, local, offline, (head, body, width, levels) = stream_case(tok, 0.5)
    streamed = list(client.stream_audio(lines))
    assert len(streamed) > 2                                      # it came in pieces, as they became final
    audio = np.concatenate(streamed)
    assert audio.shape == offline.shape
    np.testing.assert_allclose(audio, offline, atol=1e-5)        # StreamDecoder: decode's up to float rounding
    assert np.array_equal(audio, local)   # byte for byte what the in-process stream decoder gives
    # the body alone, levels given
    alone = np.concatenate(list(client.stream_audio([body[:40], body[40:]], levels=levels)))
    np.testing.assert_allclose(alone[:len(offline)], audio, atol=1e-5)   # other pushes: other rounding
    # a broken stream is answered with the position, as strict decode would
    with pytest.raises(TokenSequenceError) as e:
        list(client.stream_audio([head, body[:levels + 3], body[levels + 4:]]))
    assert e.value.position == 1 + width + levels + 3


def test_error_paths(server, tok):
    client = Client(server, retries=0)
    check_refusals(client, tok)
    with pytest.raises(MediaError, match="part 0"):               # 400: bad media
        client.request("POST", "/v1/encode", {"parts": [{"image": {"file": "bm90IGFuIGltYWdl"}}]})
    with pytest.raises(MediaError) as e:                            # the part is named once
        client.request("POST", "/v1/encode", {"parts": [{"image": {"file": "!!!notbase64"}}]})
    assert str(e.value).count("part 0") == 1 and "base64" in str(e.value)
    for field, value in (("eos", "no"), ("bos", 1), ("meta", "yes"), ("allowed_special", "<|bos|>")):
        body = json.dumps({"parts": [{"text": "x"}], field: value}).encode()
        status, _, data = client._once("POST", "/v1/encode", body, {"Content-Type": "application/json"})
        assert status == 400 and field in json.loads(data)["error"]["reason"], (field, data)
    status, _, data = client._once("POST", "/v1/decode", json.dumps({"ids": [1], "strict": "false"}).encode(),
                                   {"Content-Type": "application/json"})
    assert status == 400 and "strict" in json.loads(data)["error"]["reason"]
    status, _, data = client._once("POST", "/v1/encode", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["error"]["kind"] == "request"
    with pytest.raises(TokenSequenceError):
        client.request("POST", "/v1/decode", {"ids": "nope"})
    # multipart upload: the same ids as the JSON form
    png = _image(8, 24, 24)
    boundary = "unitok-test-boundary"
    buf = io.BytesIO()
    png_bytes = _png_bytes(png)
    fields = [("document", None, json.dumps({"parts": [{"text": "x"}, {"image": {"upload": "pic"}}]}).encode()),
              ("pic", "pic.png", png_bytes)]
    for name, filename, value in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        buf.write(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n")
    buf.write(f"--{boundary}--\r\n".encode())
    status, _, data = client._once("POST", "/v1/encode", buf.getvalue(),
                                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200
    assert json.loads(data)["ids"] == tok.encode(["x", unitok.media.open_media(png_bytes)]).ids.tolist()
    # per-token metadata, when unitok.lm is there
    lm = pytest.importorskip("unitok.lm")
    seq2, meta = client.encode(["text", _image(5, 32, 32)], meta=True)
    local_meta = lm.annotate(seq2, tok=tok)
    assert np.array_equal(meta.blocks, local_meta.blocks) and np.array_equal(meta.uni, local_meta.uni)


def _png_bytes(image: unitok.Image) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        image.save(Path(d) / "a.png")
        return (Path(d) / "a.png").read_bytes()


def test_flood_answers_429_then_recovers(server, tok):
    flood = Client(server, retries=0)
    doc = _audio(11, 1.0)
    outcomes: list = []

    def one(_):
        try:
            flood.encode(doc)
            return 200
        except ServiceError as e:
            return e.status

    with ThreadPoolExecutor(48) as pool:
        outcomes = list(pool.map(one, range(96)))
    assert outcomes.count(429) > 0, outcomes
    assert set(outcomes) <= {200, 429}
    assert Client(server, retries=0).encode(doc) == tok.encode(doc)   # recovered
    text = Client(server).metrics()
    for name in ("unitok_requests_total", "unitok_request_seconds_bucket", "unitok_batch_size_bucket",
                 "unitok_queue_depth", 'unitok_errors_total{kind="queue_full"}'):
        assert name in text
    batches = [line for line in text.splitlines() if line.startswith("unitok_batch_size_count")]
    sums = [line for line in text.splitlines() if line.startswith("unitok_batch_size_sum")]
    assert sum(float(s.split()[-1]) for s in sums) > sum(float(c.split()[-1]) for c in batches)   # batches of > 1


def test_worker_killed_mid_load(server, tok):
    client = Client(server)
    docs = [_image(20 + i, 64, 64) for i in range(6)] + [_audio(20 + i, 0.5) for i in range(6)]
    expected = [tok.encode(d) for d in docs]
    victim = client.health()["workers"][0]["pid"]
    results: list = [None] * 64

    def one(i):
        try:
            results[i] = client.encode(docs[i % len(docs)]) == expected[i % len(docs)]
        except ServiceError as e:   # a clean failure is allowed; a wrong answer or a hang is not
            results[i] = e.status

    killer = threading.Timer(0.15, os.kill, (victim, signal.SIGKILL))
    killer.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(len(results))))
    killer.join()
    assert all(r is True or r == 503 for r in results), results
    assert results.count(True) >= len(results) - 4
    deadline = time.monotonic() + 25
    while True:   # the worker is started again
        health = client.health()
        if health["restarts"] >= 1 and all(w["alive"] for w in health["workers"]):
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    assert victim not in [w["pid"] for w in health["workers"]]
    assert client.encode(docs[0]) == expected[0]


def test_tokenize_remote_equals_local(server, tmp_path):
    from unitok.data import TokenDataset
    from unitok.pipeline import Options, TokenizeConfig, tokenize

    _image(30, 32, 48).save(tmp_path / "a.png")
    (tmp_path / "b.txt").write_text("Some text to tokenize remotely.")
    lines = [{"content": [{"text": "caption"}, {"image": "a.png"}]}, {"content": [{"text": "x"}]}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    outs = {}
    for name, kw in (("local", {}), ("remote", {"suite": server, "loader": "unitok.serve.load_remote"})):
        cfg = TokenizeConfig(inputs=[str(tmp_path / "docs.jsonl")], output=str(tmp_path / name), workers=0,
                             options=Options(eos=True), progress=False, **kw)
        tokenize(cfg)
        outs[name] = TokenDataset(tmp_path / name)
    assert len(outs["local"]) == len(outs["remote"]) == 2
    for i in range(2):
        assert np.array_equal(outs["local"][i]["ids"], outs["remote"][i]["ids"])


def test_client_import_is_light():
    code = ("import sys, unitok; c = unitok.Client('http://127.0.0.1:1'); "
            "assert 'fastapi' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
