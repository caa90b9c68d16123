"""Compatibility of detectron2 v0.6 with today's Pillow, NumPy, setuptools and torch.

detectron2's last release (v0.6, 2021) predates Pillow 10, NumPy 2, setuptools 81 and
torch 2.6. :func:`apply` (called once when :mod:`cxr_det` is imported) mends each
incompatibility in place. Every fix first checks whether the installed detectron2 or
library still needs it, so with a newer or self-built detectron2 each one is a no-op.
:data:`APPLIED` lists the fixes that took effect, for logs and tests.
"""
import importlib
import importlib.util
import logging
import sys
import types
import warnings
from collections import Counter

import numpy as np
from tabulate import tabulate
from termcolor import colored

__all__ = [
    "apply",
    "APPLIED",
    "MissingExtensionError",
    "has_compiled_extension",
    "count_instances",
    "log_class_histogram",
]

logger = logging.getLogger(__name__)

APPLIED: list = []


class MissingExtensionError(ImportError):
    """An operator of detectron2's C++ extension was used but the extension is not installed."""


def has_compiled_extension() -> bool:
    """Whether ``detectron2._C`` (the compiled operators) is importable."""
    return importlib.util.find_spec("detectron2._C") is not None


class _MissingExtension(types.ModuleType):
    """Stand-in for ``detectron2._C``: importing it works, using any operator raises."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingExtensionError(
            f"detectron2's C++ extension (detectron2._C) is not installed, so its operator "
            f"'{name}' is unavailable. Rotated boxes, deformable convolution and the fast "
            f"COCO evaluator need it; axis-aligned Faster/Mask R-CNN and RetinaNet do not. "
            f"Build detectron2 from source to use this operator."
        )


def _pillow_linear():
    """``Image.LINEAR`` (removed in Pillow 10) is a default argument in detectron2.data.transforms."""
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
        return True
    return False


def _missing_extension():
    """Let the modules that import ``_C`` at top level load without the C++ extension.

    The stand-in is visible only while those modules are imported: afterwards
    ``import detectron2._C`` fails as before, so detectron2's environment report still
    says the extension is not built.
    """
    modules = (
        "detectron2.layers.deform_conv",
        "detectron2.layers.rotated_boxes",
        "detectron2.layers.roi_align_rotated",
        "detectron2.evaluation.fast_eval_api",
    )
    if has_compiled_extension() or all(m in sys.modules for m in modules):
        return False
    import detectron2

    stub = _MissingExtension("detectron2._C")
    sys.modules["detectron2._C"] = stub
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        sys.modules.pop("detectron2._C", None)
        if getattr(detectron2, "_C", None) is stub:
            del detectron2._C
    return True


def _official_coco_eval():
    """Without ``_C`` the fast COCOeval cannot run: use pycocotools' official one instead."""
    if has_compiled_extension():
        return False
    from pycocotools.cocoeval import COCOeval

    from detectron2.evaluation import coco_evaluation

    if coco_evaluation.COCOeval_opt is COCOeval:
        return False
    coco_evaluation.COCOeval_opt = COCOeval
    return True


def _model_zoo_pkg_resources():
    """``detectron2.model_zoo`` imports ``pkg_resources``, which setuptools >= 81 no longer ships.

    A minimal ``pkg_resources`` with ``resource_filename`` is visible only while that
    module is imported, so no other package sees it.
    """
    if "detectron2.model_zoo.model_zoo" in sys.modules:
        return False
    if importlib.util.find_spec("pkg_resources") is not None:
        return False
    from importlib import resources

    shim = types.ModuleType("pkg_resources")

    def resource_filename(package, resource):
        return str(resources.files(package).joinpath(resource))

    shim.resource_filename = resource_filename
    sys.modules["pkg_resources"] = shim
    try:
        importlib.import_module("detectron2.model_zoo.model_zoo")
    finally:
        sys.modules.pop("pkg_resources", None)
    return True


def count_instances(dataset_dicts, num_classes):
    """Number of non-crowd instances of each class, a list of ``num_classes`` ints.

    Raises:
        ValueError: a ``category_id`` outside ``0..num_classes - 1`` (names the file).
    """
    counts = Counter()
    for record in dataset_dicts:
        for anno in record.get("annotations", []):
            if anno.get("iscrowd", 0):
                continue
            cid = anno["category_id"]
            if not 0 <= cid < num_classes:
                raise ValueError(
                    f"{record.get('file_name', '?')}: category_id {cid} is outside 0..{num_classes - 1}"
                )
            counts[cid] += 1
    return [counts[i] for i in range(num_classes)]


def log_class_histogram(dataset_dicts, class_names):
    """Log a table of instances per class, in place of detectron2's
    ``print_instances_class_histogram`` (see :func:`_class_histogram_without_np_int`)."""
    counts = count_instances(dataset_dicts, len(class_names))
    rows = list(zip(class_names, counts)) + [("total", sum(counts))]
    table = tabulate(rows, headers=["category", "#instances"], tablefmt="pipe", numalign="left")
    logging.getLogger("detectron2.data.build").info(
        f"Distribution of instances among all {len(class_names)} categories:\n" + colored(table, "cyan")
    )


def _class_histogram_without_np_int():
    """``print_instances_class_histogram`` uses ``np.int`` (removed in NumPy 1.24).

    detectron2 swallows the AttributeError, so the class histogram silently never
    prints. Replaced by :func:`log_class_histogram`.
    """
    if hasattr(np, "int"):
        return False
    from detectron2.data import build

    if build.print_instances_class_histogram is log_class_histogram:
        return False
    build.print_instances_class_histogram = log_class_histogram
    return True


def _legacy_mask_paste():
    """``paste_mask_in_image_old`` calls ``np.array(..., copy=False)``, an error on NumPy 2.

    Only detectron2's tests use that legacy function; it now delegates to the current
    ``paste_masks_in_image`` so that it returns the same kind of result instead of raising.
    """
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        return False
    import torch

    from detectron2.layers import mask_ops

    if getattr(mask_ops.paste_mask_in_image_old, "_cxr_det_compat", False):
        return False

    def paste_mask_in_image_old(mask, box, img_h, img_w, threshold):
        pasted = mask_ops.paste_masks_in_image(
            torch.as_tensor(mask)[None].float(),
            torch.as_tensor(box, dtype=torch.float32)[None],
            (img_h, img_w),
            threshold=threshold,
        )[0]
        return pasted.to(torch.uint8) if threshold >= 0 else pasted

    paste_mask_in_image_old._cxr_det_compat = True
    mask_ops.paste_mask_in_image_old = paste_mask_in_image_old
    return True


def _scheduler_state_for_torch2():
    """detectron2's LRScheduler hook saves scheduler state only for ``_LRScheduler``.

    torch >= 2 schedulers (e.g. ``ReduceLROnPlateau``, ``CosineAnnealingLR``) derive from
    ``LRScheduler`` instead, so their state was silently dropped from checkpoints.
    """
    import torch

    base = getattr(torch.optim.lr_scheduler, "LRScheduler", None)
    if base is None or base is torch.optim.lr_scheduler._LRScheduler:
        return False
    from detectron2.engine import hooks

    if getattr(hooks.LRScheduler.state_dict, "_cxr_det_compat", False):
        return False
    stateful = (base, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def state_dict(self):
        if isinstance(self.scheduler, stateful):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state):
        if isinstance(self.scheduler, stateful):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state)

    state_dict._cxr_det_compat = True
    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    return True


def _numpy_in_weights_only_checkpoints():
    """``torch.load`` defaults to ``weights_only=True`` since torch 2.6.

    Checkpoints that hold NumPy arrays or scalars (e.g. normalisation statistics) then
    fail to load. The NumPy reconstruction functions and dtypes are allow-listed, which
    keeps the safe loader for everything else.
    """
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return False
    multiarray = getattr(np, "_core", np.core).multiarray
    allowed = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in np.sctypeDict.values()]
    already = set(torch.serialization.get_safe_globals())
    missing = [g for g in set(allowed) if g not in already]
    if not missing:
        return False
    add_safe_globals(sorted(missing, key=repr))
    return True


def _export_without_caffe2():
    """``detectron2.export`` imports ``caffe2``, which torch 2 no longer ships.

    Its package is assembled from the modules that do not need Caffe2 (``TracingAdapter``,
    used by FLOP counting, and the TorchScript helpers); the Caffe2 exporters raise an
    error that says why.
    """
    if "detectron2.export" in sys.modules or importlib.util.find_spec("caffe2") is not None:
        return False
    spec = importlib.util.find_spec("detectron2.export")
    if spec is None:
        return False
    package = types.ModuleType("detectron2.export")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingExtensionError(
            f"detectron2.export.{name} needs Caffe2, which torch 2 no longer ships; "
            "TracingAdapter and the TorchScript helpers are available"
        )

    package.__getattr__ = __getattr__
    sys.modules["detectron2.export"] = package
    try:
        flatten = importlib.import_module("detectron2.export.flatten")
        torchscript = importlib.import_module("detectron2.export.torchscript")
    except Exception:
        del sys.modules["detectron2.export"]
        raise
    package.TracingAdapter = flatten.TracingAdapter
    package.scripting_with_instances = torchscript.scripting_with_instances
    package.dump_torchscript_IR = torchscript.dump_torchscript_IR
    return True


def _ddp_of_cpu_models():
    """``create_ddp_model`` passes ``device_ids=[local rank]`` to ``DistributedDataParallel``,
    which torch rejects for a model on the CPU (multi-process CPU training with gloo, see
    :mod:`cxr_det.engine.launch`). For CPU models it passes ``device_ids=None`` (torch's
    value for CPU modules); GPU models and explicit ``device_ids`` are unchanged.
    """
    from detectron2 import engine
    from detectron2.engine import defaults

    if getattr(defaults.create_ddp_model, "_cxr_det_compat", False):
        return False
    original = defaults.create_ddp_model

    def create_ddp_model(model, *, fp16_compression=False, **kwargs):
        if "device_ids" not in kwargs and all(p.device.type == "cpu" for p in model.parameters()):
            kwargs["device_ids"] = None
        return original(model, fp16_compression=fp16_compression, **kwargs)

    create_ddp_model.__doc__ = original.__doc__
    create_ddp_model._cxr_det_compat = True
    defaults.create_ddp_model = create_ddp_model
    if getattr(engine, "create_ddp_model", None) is original:
        engine.create_ddp_model = create_ddp_model
    return True


# Warnings that detectron2 v0.6's own code triggers on today's torch at every start; they
# concern detectron2's internals, not what a cxr_det tool does. Matched by message and
# category only, so the same warning from a user's own code still shows.
_DETECTRON2_NOISE = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),  # @torch.jit.script functions in detectron2
    (UserWarning, r"torch\.meshgrid: in an upcoming release"),  # anchor generator's meshgrid call
    (UserWarning, r"TypedStorage is deprecated"),  # comm.all_gather / gather serialise through ByteStorage
)


def _quiet_detectron2_warnings():
    """Silence :data:`_DETECTRON2_NOISE`; False when every filter is already in place."""
    present = {(f[1].pattern if f[1] else "", f[2]) for f in warnings.filters if f[0] == "ignore"}
    added = False
    for category, message in _DETECTRON2_NOISE:
        if (message, category) not in present:
            warnings.filterwarnings("ignore", message=message, category=category)
            added = True
    return added


_FIXES = (
    _quiet_detectron2_warnings,
    _pillow_linear,
    _missing_extension,
    _official_coco_eval,
    _model_zoo_pkg_resources,
    _class_histogram_without_np_int,
    _legacy_mask_paste,
    _scheduler_state_for_torch2,
    _numpy_in_weights_only_checkpoints,
    _export_without_caffe2,
    _ddp_of_cpu_models,
)


def apply():
    """Apply every needed fix once; returns the names of the fixes that took effect."""
    for fix in _FIXES:
        name = fix.__name__.lstrip("_")
        if name in APPLIED:
            continue
        if fix():
            APPLIED.append(name)
            logger.debug("cxr_det.compat: applied %s", name)
    return list(APPLIED)
