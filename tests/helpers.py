"""Shared by the tests: load a command-line tool of tools/ as a module (they are scripts, not
a package), and the small-model training overrides the end-to-end tests use."""
import csv
import importlib.util
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"
CLINICAL_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"

# Tiny images, 2-image batches, no data-loader workers, no plots: a few seconds per run on CPU.
SMALL_TRAIN_OPTS = [
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "1",
    "INPUT.MIN_SIZE_TRAIN", "(128,)",
    "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "160",
    "DATALOADER.NUM_WORKERS", "0",
    "TEST.CXR_EVAL.PLOTS", "False",
    "CXR.TRAIN.PLOT_CURVES", "False",
]


def load_tool(name: str):
    """``tools/<name>.py`` imported as a fresh module (its ``main`` is then callable)."""
    spec = importlib.util.spec_from_file_location(f"cxr_tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny_run(config, root, out, extra=()):
    """Train ``config`` for 3 iterations on the dataset root ``root`` into ``out`` through
    ``tools/train_net.py`` (no evaluation), for tests that need a trained run; returns ``out``."""
    from cxr_det.engine import argument_parser

    args = argument_parser().parse_args(
        ["--config-file", str(config), "CXR.DATASET_ROOT", str(root), "OUTPUT_DIR", str(out),
         *SMALL_TRAIN_OPTS, "SOLVER.MAX_ITER", "3", "DATASETS.TEST", "()", *[str(e) for e in extra]])
    load_tool("train_net").main(args)
    return out


def loopback_urlopen(url_or_request, timeout=5):
    """``urllib.request.urlopen`` for a server of the test on 127.0.0.1, ignoring proxy
    variables: urllib's global opener keeps the proxies it saw first (an offline test sets a
    dead one), and a loopback server must never be reached through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url_or_request, timeout=timeout)


def image(image_id, gt=(), preds=(), nf=None):
    """An evaluation ``ImageBoxes`` from ``gt = [(box, cls)]`` and ``preds = [(box, score, cls)]``
    (XYXY boxes); ``nf`` the model's own no-finding score, if any."""
    from cxr_det.evaluation.matching import ImageBoxes

    return ImageBoxes(image_id, [b for b, _ in gt], [c for _, c in gt], [b for b, _, _ in preds],
                      [s for _, s, _ in preds], [c for _, _, c in preds], nf)


def model_cfg(config_file=None, opts=()):
    """A config as the tools that build a model load it: merged, then adapted to this machine
    (CPU, no pretrained weights)."""
    from cxr_det.config import get_cxr_cfg
    from cxr_det.engine import adapt_to_machine

    return adapt_to_machine(get_cxr_cfg(config_file, opts))


def write_csv(path, header, rows):
    """A hand-written CSV fixture: ``header`` then ``rows``, parent folders made; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
