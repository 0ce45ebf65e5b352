"""Deterministic synthetic genomic data: one kit for the demo catalog, the tests and the benchmarks.

- ``synthetic.small``: small files full of edge cases (unsorted, ties, header quirks, giant contigs,
  encodings, mislabelled binaries, truncation), for the pipeline and API tests;
- ``synthetic.large``: GB-scale streaming generators (hg38 contigs, realistic reads and peaks), for
  ``bench/``;
- ``synthetic.demo``: the demo catalog ``make run`` serves (``python -m synthetic.demo DIR``).

Same seed, same bytes, so the same cache keys. Not part of the Dagster code location.
"""
