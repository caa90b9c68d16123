"""Explicit dataset registration: a registered name means one set of options; importing
cxr_det registers nothing and loads no data code; the config module's imports are light."""
import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data import (
    DatasetRegistrationError,
    cxr_dataset_names,
    register_cxr_datasets,
    register_from_config,
    unregister_cxr_datasets,
)

ROOT = Path(__file__).resolve().parents[3]


def _cfg(root, *opts):
    return get_cxr_cfg(opts=["CXR.DATASET_ROOT", str(root), *opts])


def test_import_cxr_det_registers_nothing_and_loads_no_data_code():
    code = (
        "import sys, cxr_det\n"
        "from detectron2.data import DatasetCatalog\n"
        "heavy = [m for m in ('pandas', 'pydicom', 'albumentations', 'cxr_det.data', 'cxr_det.modeling') if m in sys.modules]\n"
        "print(heavy, [n for n in DatasetCatalog.list() if n.startswith(('reflacx', 'vindr'))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[] []"


def test_config_module_imports_only_detectron2_and_the_format_schemas():
    tree = ast.parse((ROOT / "cxr_det/config.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported and all(m.startswith(("detectron2.", "cxr_det.formats")) for m in imported), imported
    # no import inside a function (lazy imports against cycles)
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn)), fn.name


def test_schema_modules_import_only_the_standard_library():
    for path in (ROOT / "cxr_det/formats").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in {"cxr_det", "re", "warnings", "typing"} and (
                    node.module == "cxr_det.formats" or not node.module.startswith("cxr_det")
                ), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert all(a.name in sys.stdlib_module_names for a in node.names), (path.name, node.names)


def test_same_options_register_once_and_record_them(tmp_path):
    cfg = _cfg(tmp_path)
    names = register_from_config(cfg)
    assert sorted(names) == sorted(cxr_dataset_names())
    assert register_from_config(cfg.clone()) == names  # idempotent: equal options
    meta = MetadataCatalog.get("reflacx_train")
    assert meta.cxr_options["root"] == str(tmp_path.resolve())
    assert meta.cxr_options["registrar"]["readers"] == cfg.CXR.REFLACX.READERS
    assert meta.cxr_options["clinical"] is None
    assert len(meta.cxr_options_key) == 12
    assert MetadataCatalog.get("vindr_train").cxr_options_key != meta.cxr_options_key


def test_other_options_for_a_registered_name_raise_and_say_what_differs(tmp_path):
    register_from_config(_cfg(tmp_path))
    with pytest.raises(DatasetRegistrationError, match=r"reflacx_train.*readers: 'all_readers' -> 'per_reading'"):
        register_from_config(_cfg(tmp_path, "CXR.REFLACX.READERS", "per_reading"))
    with pytest.raises(DatasetRegistrationError, match=r"clinical"):
        register_from_config(_cfg(tmp_path, "CXR.CLINICAL.ENABLED", "True"))
    with pytest.raises(DatasetRegistrationError, match=r"root"):
        register_from_config(_cfg(tmp_path / "elsewhere"))
    # the first registration is untouched by the refused ones
    assert MetadataCatalog.get("reflacx_train").cxr_options["registrar"]["readers"] == "all_readers"

    assert "reflacx_train" in unregister_cxr_datasets()
    assert "reflacx_train" not in DatasetCatalog.list()
    register_from_config(_cfg(tmp_path, "CXR.REFLACX.READERS", "per_reading"))
    assert MetadataCatalog.get("reflacx_train").cxr_options["registrar"]["readers"] == "per_reading"


def test_a_name_registered_by_other_code_is_not_replaced(tmp_path):
    DatasetCatalog.register("vindr_test", lambda: [])
    with pytest.raises(DatasetRegistrationError, match="vindr_test.*other code"):
        register_cxr_datasets(_cfg(tmp_path), datasets=("vindr",))


def test_deprecated_reader_mode_still_registers_with_a_warning(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_from_config(_cfg(tmp_path, "CXR.REFLACX.READERS", "pooled", "CXR.VINDR.READERS", "fused"))
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("'pooled'" in m and "all_readers" in m for m in messages), messages
    assert any("'fused'" in m and "weighted_boxes_fusion" in m for m in messages), messages
