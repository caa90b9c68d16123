import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_dataset_catalog():
    """Each test starts and ends without cxr_det's dataset names registered: a name means one
    set of options per process, and tests register theirs with their own roots."""
    from cxr_det.data import unregister_cxr_datasets

    unregister_cxr_datasets()
    yield
    unregister_cxr_datasets()


@pytest.fixture
def catalog_names():
    """Names a test registers in detectron2's catalogs by hand: append them; removed after."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = []
    yield names
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, which stall when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_reflacx(tmp_path_factory):
    """A 20-image synthetic REFLACX root (160 px) shared by the prediction and service tests."""
    from cxr_det.synthetic import make_reflacx

    root = tmp_path_factory.mktemp("tiny_reflacx")
    make_reflacx(root, 20, seed=5, size=160)
    return root


@pytest.fixture(scope="session")
def tiny_clinical_run(tiny_reflacx, tmp_path_factory):
    """The demo clinical config trained 3 iterations on :func:`tiny_reflacx` (read-only for tests)."""
    from helpers import CLINICAL_CONFIG, train_tiny_run

    return train_tiny_run(CLINICAL_CONFIG, tiny_reflacx, tmp_path_factory.mktemp("runs") / "tiny_clinical")
