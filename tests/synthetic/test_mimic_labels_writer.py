"""Synthetic MIMIC-CXR-JPG image-label tables: read back by the registrar."""

def test_mimic_labels_writer_reads_back(tmp_path):
    """The synthetic MIMIC-CXR-JPG label tables load with every image of the split file."""
    from cxr_det.data.datasets.mimic_cxr_labels import load_mimic_cxr_labels
    from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels

    s = make_mimic_cxr_labels(tmp_path, 8, seed=2, size=32)
    assert (tmp_path / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz").is_file()
    recs = load_mimic_cxr_labels(tmp_path, "all", views="all", labels="all14", uncertainty="ignore")
    assert len(recs) == s["images"]
    assert sum(r["split"] == "val" for r in recs) == s["images_per_split"]["validate"] >= 1
    assert any(0.0 in r["label_weights"] for r in recs)
    frontal = load_mimic_cxr_labels(tmp_path, "all")
    assert len(frontal) == s["views"]["PA"] + s["views"]["AP"]
    make_mimic_cxr_labels(tmp_path / "plain", 3, seed=2, size=32, gzipped=False)
    assert (tmp_path / "plain" / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-split.csv").is_file()
