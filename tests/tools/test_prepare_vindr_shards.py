"""tools/prepare_vindr.py for array jobs and pre-emption: --shard i/n splits the images into
disjoint parts that merge into the cache an unsharded run builds, and a run killed with
SIGKILL mid-way leaves no truncated PNG and resumes to the same cache."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import cxr_det  # noqa: F401
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.datasets.vindr_cache import (
    build_png_cache,
    merge_shards,
    parse_shard,
    read_scales,
    shard_files,
    shard_of,
)
from cxr_det.synthetic.dicom_writer import write_dicom
from helpers import ROOT, load_tool


def _ids(n, seed):
    return [hashlib.md5(f"{seed}-{i}".encode()).hexdigest() for i in range(n)]


def _write_vindr(root: Path, train: int, test: int, size=(90, 110), seed=0):
    """``train`` + ``test`` 12-bit DICOMs of noise (noise keeps PNG encoding from being trivial)."""
    rng = np.random.default_rng(seed)
    for folder, n in (("train", train), ("test", test)):
        for image_id in _ids(n, f"{folder}{seed}"):
            pixels = rng.integers(0, 4096, size=size, dtype=np.uint16)
            write_dicom(root / "vindr-cxr" / folder / f"{image_id}.dicom", pixels, bits_stored=12)
    return root


@pytest.fixture(scope="module")
def vindr_root(tmp_path_factory):
    return _write_vindr(tmp_path_factory.mktemp("vindr_shards"), train=14, test=4)


@pytest.fixture(scope="module")
def reference(vindr_root, tmp_path_factory):
    """The cache an uninterrupted, unsharded run builds."""
    out = tmp_path_factory.mktemp("reference") / "png_64"
    summary = build_png_cache(vindr_root, out, max_size=64)
    assert summary["written"] == 18 and summary["failed"] == 0
    return out


def _pngs(cache: Path):
    return {p.relative_to(cache).as_posix(): p for p in sorted(cache.glob("*/*.png"))}


def _assert_same_cache(cache: Path, reference: Path):
    got, want = _pngs(cache), _pngs(reference)
    assert sorted(got) == sorted(want)
    for name, path in want.items():
        assert got[name].read_bytes() == path.read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_csv(cache / "scales.csv"), pd.read_csv(reference / "scales.csv"))


def test_parse_shard_accepts_index_over_count_and_names_bad_input():
    assert parse_shard("0/1") == (0, 1) and parse_shard(" 3 / 8 ") == (3, 8)
    for bad in ("8/8", "1/0", "-1/4", "2", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_shard_of_is_a_stable_partition():
    ids = _ids(400, "p")
    for count in (1, 3, 7):
        shards = [shard_of("train", i, count) for i in ids]
        assert shards == [shard_of("train", i, count) for i in ids]  # deterministic
        assert set(shards) == set(range(count))  # no empty shard among 400 images
        sizes = np.bincount(shards, minlength=count)
        assert sizes.min() > 0.5 * 400 / count  # balanced, roughly
    # The folder is part of the key: the same id in train and test may land apart.
    assert any(shard_of("train", i, 5) != shard_of("test", i, 5) for i in ids)


def test_shards_are_disjoint_cover_all_and_merge_into_the_unsharded_cache(vindr_root, reference, tmp_path):
    out = tmp_path / "png_64"
    parts = []
    for index in range(3):
        summary = build_png_cache(vindr_root, out, max_size=64, shard=(index, 3))
        assert summary["shard"] == [index, 3] and summary["failed"] == 0
        scales = pd.read_csv(out / f"scales.shard-{index}-of-3.csv", dtype={"image_id": str})
        assert len(scales) == summary["total"] == summary["written"]
        parts.append({(f, i) for f, i in zip(scales["folder"], scales["image_id"])})
        assert all(shard_of(f, i, 3) == index for f, i in parts[-1])
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 18  # disjoint, covering
    assert not (out / "scales.csv").exists()
    with pytest.raises(DatasetFormatError, match="not merged.*--merge-shards"):
        read_scales(out)

    merged = merge_shards(out)
    assert merged["shards"] == {"count": 3, "merged": [0, 1, 2]}
    assert (merged["total"], merged["written"], merged["images"]) == (18, 18, 18)
    assert shard_files(out) == []
    _assert_same_cache(out, reference)
    assert len(read_scales(out)) == 18

    # One shard re-run after the merge (e.g. its task failed) merges again on its own.
    folder, image_id = sorted(parts[2])[0]
    (out / folder / f"{image_id}.png").unlink()
    again = build_png_cache(vindr_root, out, max_size=64, shard=(2, 3))
    assert (again["written"], again["existing"]) == (1, len(parts[2]) - 1)
    assert merge_shards(out)["shards"]["merged"] == [0, 1, 2]
    _assert_same_cache(out, reference)


def test_merge_names_unfinished_shards_and_mixed_counts(vindr_root, tmp_path):
    out = tmp_path / "png_64"
    build_png_cache(vindr_root, out, max_size=64, shard=(0, 3))
    build_png_cache(vindr_root, out, max_size=64, shard=(2, 3))
    (out / "summary.shard-2-of-3.json").unlink()  # shard 2 was killed before it completed
    with pytest.raises(DatasetFormatError, match=r"2 of 3 shard\(s\) not finished.*1/3, 2/3 \(interrupted"):
        merge_shards(out)
    assert (out / "scales.shard-0-of-3.csv").is_file()  # nothing removed by a refused merge
    build_png_cache(vindr_root, out, max_size=64, shard=(1, 4))
    with pytest.raises(DatasetFormatError, match=r"different shard counts \[3, 4\]"):
        merge_shards(out)


def test_cli_shards_then_merge(vindr_root, reference, tmp_path):
    tool = load_tool("prepare_vindr")
    out = tmp_path / "cache"
    common = ["--root", str(vindr_root), "--max-size", "64", "--output", str(out)]
    assert tool.main(common + ["--shard", "0/2"]) == 0
    assert tool.main(["--output", str(out), "--merge-shards"]) == 1  # shard 1 not run yet: refused
    assert tool.main(common + ["--shard", "1/2"]) == 0
    assert tool.main(["--output", str(out), "--merge-shards"]) == 0
    _assert_same_cache(out, reference)
    with pytest.raises(SystemExit):
        tool.parse_args(common + ["--shard", "2/2"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--root", str(vindr_root), "--merge-shards"])  # which cache? needs --output or --max-size


@pytest.fixture(scope="module")
def big_vindr_root(tmp_path_factory):
    """Enough images that a conversion is still running when its first PNGs appear."""
    return _write_vindr(tmp_path_factory.mktemp("vindr_kill"), train=40, test=0, size=(700, 600), seed=1)


def _decodes(path: Path) -> bool:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    return data.size > 0 and cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None


def test_kill_9_mid_way_then_rerun_completes_to_the_uninterrupted_cache(big_vindr_root, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools/prepare_vindr.py"), "--root", str(big_vindr_root), "--max-size", "256",
           "--splits", "train", "--flush-seconds", "0"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["--output", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((killed / "train").glob("*.png"))) >= 3:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "prepare_vindr finished (or failed) before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = sorted((killed / "train").glob("*.png"))
    assert 3 <= len(left) < 40, "killed mid-way"
    assert all(_decodes(p) for p in left), "a PNG under its final name is complete"
    assert not (killed / "summary.json").exists()  # the run never completed

    rerun = subprocess.run(cmd + ["--output", str(killed)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = int(rerun.stderr.split(" written, ")[1].split(" already present")[0])
    assert resumed >= len(left) - 1  # the PNGs listed in the flushed scales.csv were skipped
    reference = tmp_path / "reference"
    build_png_cache(big_vindr_root, reference, max_size=256, splits=["train"])
    assert all(_decodes(p) for p in _pngs(killed).values())
    _assert_same_cache(killed, reference)
    # What a kill can leave behind is a temporary file no reader takes for a PNG of the cache.
    assert {p.name for p in (killed / "train").iterdir() if not p.name.endswith(".png")} <= {
        p.name for p in (killed / "train").glob(".*.tmp")}
