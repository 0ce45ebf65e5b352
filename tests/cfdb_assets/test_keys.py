"""Content-addressed cache keys and the checksum they are derived from."""

from __future__ import annotations

import hashlib
import re

import pytest

from cfdb_assets.keys import RECIPE_VERSIONS, NotAddressable, cache_key, is_cache_key, source_checksum

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CHECKSUM = f"md5:{MD5}"
OPTIONS = {"compression_level": 6, "index": "auto"}


def _key(**changes) -> str:
    args = {"checksum": CHECKSUM, "format_name": "BED", "family": "intervals", "options": OPTIONS}
    args.update(changes)
    return cache_key(args["checksum"], args["format_name"], args["family"], args["options"])


# --- cache_key -------------------------------------------------------------------------------


def test_cache_key_is_32_lowercase_hex():
    assert re.fullmatch(r"[0-9a-f]{32}", _key())


def test_cache_key_is_deterministic():
    assert _key() == _key() == cache_key(CHECKSUM, "BED", "intervals", dict(OPTIONS))


def test_cache_key_is_the_sha256_of_the_canonical_description():
    # Pinned: a change here re-keys (and so rebuilds) every artifact in every store.
    canonical = (
        '{"checksum":"md5:d41d8cd98f00b204e9800998ecf8427e","family":"intervals","format":"BED",'
        '"options":{"compression_level":6,"index":"auto"},"recipe":1}'
    )
    assert _key() == hashlib.sha256(canonical.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    "changes",
    [
        {"checksum": f"md5:{'0' * 32}"},
        {"checksum": f"sha256:{SHA256}"},
        {"format_name": "narrowPeak"},
        {"format_name": "bed"},
        {"family": "alignments"},
        {"options": {"compression_level": 5, "index": "auto"}},
        {"options": {"compression_level": 6, "index": "csi"}},
        {"options": {"compression_level": "6", "index": "auto"}},
        {"options": {"compression_level": 6}},
        {"options": {**OPTIONS, "extra": True}},
        {"options": {}},
    ],
    ids=repr,
)
def test_cache_key_changes_with_anything_that_shapes_the_output(changes):
    assert _key(**changes) != _key()


def test_cache_key_changes_with_the_family_recipe_version(monkeypatch):
    before = _key()
    alignments_before = _key(family="alignments")

    monkeypatch.setitem(RECIPE_VERSIONS, "intervals", RECIPE_VERSIONS["intervals"] + 1)

    assert _key() != before
    assert _key(family="alignments") == alignments_before  # other families keep their keys


def test_cache_key_ignores_option_order():
    forward = {"compression_level": 6, "index": "auto", "z": [1, 2], "a": {"y": 1, "x": 2}}
    backward = {"a": {"x": 2, "y": 1}, "z": [1, 2], "index": "auto", "compression_level": 6}

    assert list(forward) != list(backward)
    assert _key(options=forward) == _key(options=backward)


def test_cache_key_refuses_a_family_without_a_recipe():
    with pytest.raises(ValueError, match="passthrough"):
        _key(family="passthrough")


# --- source_checksum -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md5", "sha256", "expected"),
    [
        (MD5, None, f"md5:{MD5}"),
        (MD5, SHA256, f"md5:{MD5}"),  # md5 preferred
        (None, SHA256, f"sha256:{SHA256}"),  # falls back to sha256
        ("", SHA256, f"sha256:{SHA256}"),
        ("   ", SHA256, f"sha256:{SHA256}"),
        (MD5.upper(), None, f"md5:{MD5}"),  # lowercased
        (f"  {MD5}\n", None, f"md5:{MD5}"),  # stripped
        (None, f"\t{SHA256.upper()} ", f"sha256:{SHA256}"),
        (MD5[:-1], SHA256, f"sha256:{SHA256}"),  # a malformed md5 falls back to a valid sha256
    ],
)
def test_source_checksum_prefers_md5_then_sha256_normalized(md5, sha256, expected):
    assert source_checksum(md5, sha256) == expected


@pytest.mark.parametrize(
    ("md5", "sha256"),
    [
        (None, None),
        ("", ""),
        ("  ", "\n"),
        (MD5[:-1], None),  # 31 characters
        (MD5 + "0", None),  # 33 characters
        ("g" * 32, None),  # not hex
        (MD5[:16] + " " + MD5[17:], None),  # inner whitespace
        (SHA256, None),  # a sha256 is not an md5
        (None, SHA256[:-1]),  # 63 characters
        (None, SHA256 + "0"),
        (None, "z" * 64),
        (None, MD5),  # an md5 is not a sha256
    ],
)
def test_source_checksum_refuses_missing_or_malformed_checksums(md5, sha256):
    with pytest.raises(NotAddressable):
        source_checksum(md5, sha256)


def test_not_addressable_explains_why():
    with pytest.raises(NotAddressable, match="no md5 or sha256"):
        source_checksum(None, None)
    with pytest.raises(NotAddressable, match="32 hex"):
        source_checksum("abc", None)
    with pytest.raises(NotAddressable, match="64 hex"):
        source_checksum(None, "abc")


# --- is_cache_key ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [_key(), "0" * 32, "0123456789abcdef" * 2])
def test_is_cache_key_accepts_well_formed_keys(value):
    assert is_cache_key(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * 31,
        "0" * 33,
        SHA256,
        _key().upper(),
        "g" * 32,
        _key() + "\n",  # `$` alone would let a trailing newline through
        " " + _key(),
        _key() + " ",
        "../" + "0" * 29,
    ],
)
def test_is_cache_key_refuses_anything_else(value):
    assert is_cache_key(value) is False
