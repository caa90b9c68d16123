"""Clinical records ride on the dataset dicts; statistics come from train and are reused."""
import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog

from cxr_det.data.clinical.pipeline import CHECKPOINT_KEY, load_featurizer, prepare_clinical
from cxr_det.data import register_from_config, unregister_cxr_datasets
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.synthetic import make_reflacx
from cxr_det.engine import get_cxr_cfg


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clin")
    make_reflacx(root, 30, seed=5, size=128)
    return root


@pytest.fixture
def cfg(root, tmp_path):
    cfg = get_cxr_cfg(opts=["CXR.DATASET_ROOT", str(root), "CXR.CLINICAL.ENABLED", "True", "OUTPUT_DIR", str(tmp_path),
                             "DATASETS.TRAIN", "('reflacx_train',)", "DATASETS.TEST", "('reflacx_val',)"])
    register_from_config(cfg)
    yield cfg
    unregister_cxr_datasets()


def test_records_carry_raw_clinical_and_stats_come_from_train(cfg, tmp_path):
    train = DatasetCatalog.get("reflacx_train")
    with_record = [r for r in train if r["clinical"] is not None]
    assert with_record and all("temperature" in r["clinical"] for r in with_record)

    featurizer = prepare_clinical(cfg, training=True)
    assert cfg.CXR.CLINICAL.STATS_FILE == str(tmp_path / "clinical_stats.json")
    assert cfg.CXR.CLINICAL.CATEGORICAL_SIZES == [3]  # unknown, F, M

    # The mean of the cleaned training ages is the imputed (normalised 0) value.
    ages = [featurizer.clean(r["clinical"])[0][0] for r in with_record]
    assert featurizer.mean[0] == pytest.approx(np.nanmean(ages), rel=1e-6)

    # Evaluation reloads the same statistics from the file, unchanged.
    cfg.CXR.CLINICAL.STATS_FILE = str(tmp_path / "clinical_stats.json")
    reloaded = load_featurizer(cfg)
    val = DatasetCatalog.get("reflacx_val")
    for record in val:
        for a, b in zip(featurizer.transform(record["clinical"]), reloaded.transform(record["clinical"])):
            np.testing.assert_array_equal(a, b)


def test_mapper_gives_tensors_and_survives_missing_record(cfg):
    prepare_clinical(cfg, training=True)
    mapper = CXRDatasetMapper(cfg, is_train=False)
    record = dict(DatasetCatalog.get("reflacx_val")[0])
    out = mapper(record)
    n = len(cfg.CXR.CLINICAL.NUMERIC)
    assert out["clinical"]["numeric"].shape == (n,) and out["clinical"]["missing"].shape == (n,)
    assert out["clinical"]["categorical"].dtype == torch.int64
    record["clinical"] = None
    empty = mapper(record)["clinical"]
    assert empty["missing"].tolist() == [1.0] * n
    assert empty["numeric"].abs().sum() == 0 and empty["categorical"].tolist() == [0]


def test_statistics_load_from_a_checkpoint(cfg, tmp_path):
    featurizer = prepare_clinical(cfg, training=True)
    weights = tmp_path / "sub" / "model_final.pth"
    weights.parent.mkdir()
    torch.save({"model": {}, CHECKPOINT_KEY: featurizer.state_dict()}, weights)
    cfg.CXR.CLINICAL.STATS_FILE = ""
    cfg.MODEL.WEIGHTS = str(weights)
    loaded = load_featurizer(cfg)
    assert loaded.state_dict() == featurizer.state_dict()
    cfg.MODEL.WEIGHTS = ""
    with pytest.raises(FileNotFoundError, match="STATS_FILE"):
        load_featurizer(cfg)
