"""Batch tokenization of datasets (``unitok tokenize``): sources, workers, shards, resume, engines.

    >>> from unitok.pipeline import TokenizeConfig, tokenize
    >>> summary = tokenize(TokenizeConfig(["docs.jsonl"], "out/tokens", workers=2))
    >>> from unitok.data import TokenDataset
    >>> TokenDataset("out/tokens")[0]["ids"]

- ``sources.py``: inputs (folders, globs, JSONL manifests, WebDataset tars) -> numbered records
- ``worker.py``: one record -> a tokenized document or a skipped record, the suite loaded once
- ``local.py`` / ``ray_engine.py``: engines mapping records to results (processes; Ray Data)
- ``job.py``: run.json, resume, shards from results, progress, errors.jsonl, index.json, summary
- ``shards.py``: the on-disk format (Megatron .bin/.idx, groups, document index, manifests)
- ``verify.py``: ``unitok verify``
"""

from .job import Summary, TokenizeConfig, tokenize
from .verify import VerifyReport, verify
from .worker import Options

__all__ = ["TokenizeConfig", "Options", "Summary", "tokenize", "verify", "VerifyReport"]
