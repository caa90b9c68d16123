"""A folder of classes: single-label (and binary) classification dataset dicts.

Two layouts are read under ``<root>/<name>/``:

* **split folders**: ``{train,val,test}/<class>/*`` (also spelled ``validate``, ``valid``,
  ``validation``; any case). The pediatric pneumonia set of Kermany et al. ships so:
  ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (Kermany D., Zhang K., Goldbaum
  M., "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
  Classification", Mendeley Data v2, 2018, https://doi.org/10.17632/rscbjbr9sj.2; the
  Kaggle copy "chest-xray-pneumonia" has the same tree).
* **flat**: ``<class>/*``, or ``<class>/images/*`` when a class folder has an ``images/``
  subfolder (its other subfolders, such as ``masks/``, are ignored). The COVID-19
  Radiography Database ships so: ``COVID-19_Radiography_Dataset/{COVID,Lung_Opacity,Normal,
  Viral Pneumonia}/{images,masks}/*.png`` plus metadata spreadsheets beside the class
  folders (Chowdhury et al., IEEE Access 2020; Rahman et al., Comput. Biol. Med. 2021;
  https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database). No split
  is shipped: a deterministic stratified split is made (:func:`stratified_split`).

Images: ``.png``, ``.jpg``, ``.jpeg`` and the DICOM suffixes of
:data:`cxr_det.data.image_io.DICOM_SUFFIXES` (any case). Other files (``.DS_Store``,
``Thumbs.db``, spreadsheets inside a class folder) and images whose header cannot be read
are counted skips; a class folder without images is a warning.
"""
import hashlib
import logging
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog, dataset_root
from cxr_det.data.dicom_header import DicomReadError, dicom_size
from cxr_det.data.image_io import DICOM_SUFFIXES
from cxr_det.formats import SPLIT_ALIASES, normalise_split

__all__ = [
    "IMAGE_FOLDER_SUFFIXES",
    "IMAGES_SUBFOLDER",
    "folder_layout",
    "folder_classes",
    "stratified_split",
    "load_image_folder",
    "register_image_folder",
]

logger = logging.getLogger(__name__)

IMAGE_FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg") + tuple(DICOM_SUFFIXES)
# A class folder holding this subfolder keeps its images there (COVID-19 Radiography Database).
IMAGES_SUBFOLDER = "images"
_SPLIT_FOLDERS = ("train", "val", "test")
_OPTIONS = ("classes", "val_fraction", "test_fraction", "seed")


def _subdirs(path: Path):
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(base: Path) -> dict:
    """{split: folder} of the split folders directly under ``base`` (aliases accepted)."""
    found = {}
    for sub in _subdirs(base):
        key = sub.name.lower()
        key = SPLIT_ALIASES.get(key, key)
        if key in _SPLIT_FOLDERS:
            if key in found:
                raise DatasetFormatError(f"{base}: two folders for split {key!r}: {found[key].name}, {sub.name}")
            found[key] = sub
    return found


def _base(root, name) -> Path:
    base = dataset_root(root) / str(name)
    if not base.is_dir():
        raise DatasetFormatError(f"{base}: folder not found (a folder of classes: <class>/* or {{train,val,test}}/<class>/*)")
    return base


def folder_layout(root, name) -> str:
    """``"split"`` when ``<root>/<name>`` holds a train/val/test folder, else ``"flat"``."""
    return "split" if _split_folders(_base(root, name)) else "flat"


def folder_classes(root, name) -> list:
    """Sorted class folder names: over every split folder, or the subfolders of a flat tree."""
    base = _base(root, name)
    splits = _split_folders(base)
    parents = list(splits.values()) or [base]
    names = sorted({d.name for parent in parents for d in _subdirs(parent)})
    if not names:
        raise DatasetFormatError(f"{base}: no class folders found")
    return names


def _class_files(class_dir: Path):
    """Files of one class folder: those of ``images/`` when present, else its own files."""
    images = class_dir / IMAGES_SUBFOLDER
    source = images if images.is_dir() else class_dir
    return sorted(p for p in source.iterdir() if p.is_file())


def _image_size(path: Path):
    """``(height, width)`` from the file's header (pixels not decoded); raises on failure."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return dicom_size(path)
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _hash_key(seed, rel_path):
    return hashlib.md5(f"{seed}:{rel_path}".encode("utf-8")).hexdigest()


def stratified_split(items, val_fraction=0.2, test_fraction=0.0, seed=0) -> dict:
    """{relative path: split} for ``items`` = ``[(relative path, class index)]``.

    Within each class the paths are ordered by the md5 of ``"<seed>:<path>"``; the first
    ``round(n * test_fraction)`` go to ``test``, the next ``round(n * val_fraction)`` to
    ``val``, the rest to ``train``. Deterministic, independent of listing order, and
    stratified (each class split in the same proportions, up to rounding). Raises
    ValueError when a fraction is outside [0, 1] or their sum exceeds 1.
    """
    val_fraction, test_fraction = float(val_fraction), float(test_fraction)
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0 and val_fraction + test_fraction <= 1.0):
        raise ValueError(f"image folder: need 0 <= val_fraction, test_fraction and their sum <= 1; got {val_fraction}, {test_fraction}")
    by_class = {}
    for rel, label in items:
        by_class.setdefault(label, []).append(rel)
    out = {}
    for rels in by_class.values():
        rels = sorted(rels, key=lambda r: _hash_key(seed, r))
        n_test = int(round(len(rels) * test_fraction))
        n_val = min(int(round(len(rels) * val_fraction)), len(rels) - n_test)
        for i, rel in enumerate(rels):
            out[rel] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    return out


def _resolve_classes(classes, present, base):
    if classes is None or list(classes) in ([], ["all"]):
        return list(present)
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"image folder {base}: class list has duplicates: {classes}")
    unlisted = [c for c in present if c not in classes]
    if unlisted:
        raise ValueError(f"image folder {base}: class folder(s) {unlisted} not in the given classes {classes}")
    return classes


def load_image_folder(root, name, split="train", *, classes=None, val_fraction=0.2, test_fraction=0.0, seed=0, skip_log=None):
    """Single-label dataset dicts of ``<root>/<name>`` (layouts in the module docstring).

    Args:
        root: dataset root (``None``: ``$CXR_DATASETS`` or ``./datasets``).
        name: the dataset's folder under the root, e.g. ``"chest_xray"``.
        split: ``train``/``val``/``test``/``all`` (other spellings as
            :func:`cxr_det.formats.normalise_split` accepts).
        classes: class names in label order (default: the class folders, sorted). A class
            folder not listed raises ValueError naming it; a listed class without images
            is a warning.
        val_fraction, test_fraction, seed: the flat layout's split (:func:`stratified_split`);
            unused when split folders exist.
        skip_log: a :class:`SkipLog` to count skips into (default: a new one, reported).

    Returns records sorted by relative path: ``file_name`` (absolute), ``height``,
    ``width``, ``image_id`` (position), ``dataset`` (``name``), ``split``, ``image_path``
    (relative to ``<root>/<name>``), ``label`` (int index into the classes), ``class_name``,
    ``clinical`` (None: these sets ship none). Raises :class:`DatasetFormatError` when
    the folder, the requested split folder, or any image is missing.
    """
    split = normalise_split(split, f"image folder {name}")
    base = _base(root, name)
    splits = _split_folders(base)
    skips = skip_log if skip_log is not None else SkipLog(f"image folder {name}")
    classes = _resolve_classes(classes, folder_classes(root, name), base)
    index = {c: i for i, c in enumerate(classes)}
    if splits:
        wanted = [s for s in _SPLIT_FOLDERS if s in splits] if split == "all" else [split]
        if split != "all" and split not in splits:
            raise DatasetFormatError(f"{base}: no {split!r} folder; split folders present: {sorted(splits)}")
        parents = [(s, splits[s]) for s in wanted]
    else:
        parents = [(None, base)]

    found = []  # (relative path, path, label, split folder or None)
    for part, parent in parents:
        for class_name in classes:
            class_dir = parent / class_name
            files = _class_files(class_dir) if class_dir.is_dir() else []
            images = []
            for path in files:
                if path.suffix.lower() in IMAGE_FOLDER_SUFFIXES:
                    images.append(path)
                else:
                    skips.skip("not an image file (suffix)", str(path))
            if not images:
                logger.warning("image folder %s: class %r has no images in %s", name, class_name, class_dir)
            found += [(path.relative_to(base).as_posix(), path, index[class_name], part) for path in images]
    if not found:
        raise DatasetFormatError(f"{base}: no images ({'/'.join(IMAGE_FOLDER_SUFFIXES)}) in the class folders of split {split!r}")
    if not splits:
        assigned = stratified_split([(f[0], f[2]) for f in found], val_fraction, test_fraction, seed)
        found = [(rel, path, label, assigned[rel]) for rel, path, label, _ in found]
        if split != "all":
            found = [f for f in found if f[3] == split]

    records = []
    for rel, path, label, part in sorted(found, key=lambda f: f[0]):
        try:
            height, width = _image_size(path)
        except (OSError, UnidentifiedImageError, DicomReadError, ValueError) as e:
            skips.skip("unreadable image", f"{path}: {e}")
            continue
        records.append(
            {
                "file_name": str(path.resolve()),
                "height": int(height),
                "width": int(width),
                "image_id": len(records),
                "dataset": str(name),
                "split": part,
                "image_path": rel,
                "label": label,
                "class_name": classes[label],
                "clinical": None,
            }
        )
    if skip_log is None:
        skips.report(logger)
    logger.info("image folder %s (%s layout, split %s): %d images", name, "split" if splits else "flat", split, len(records))
    return records


def register_image_folder(name, root=None, folder=None, split="train", **options):
    """Register ``load_image_folder(root, folder or name, split, **options)`` as ``name``.

    Options: ``classes``, ``val_fraction``, ``test_fraction``, ``seed`` (TypeError for
    another). Metadata: ``thing_classes`` (the given classes, else the class folders found
    now; when the folder does not exist yet, set at the first load),
    ``evaluator_type="cxr_classification"``, ``dataset`` (the folder name), ``split``,
    ``task="single_label"``, and the options.
    """
    folder = str(folder or name)
    split = normalise_split(split, f"image folder {folder}")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"register_image_folder: unknown option(s) {unknown}; valid: {sorted(_OPTIONS)}")
    stratified_split([], options.get("val_fraction", 0.2), options.get("test_fraction", 0.0))  # checks the fractions
    classes = options.get("classes")
    try:
        classes = _resolve_classes(classes, folder_classes(root, folder), dataset_root(root) / folder)
    except DatasetFormatError:
        logger.debug("image folder %s: not found yet; classes recorded at the first load", folder)
    meta = MetadataCatalog.get(name)

    def load():
        records = load_image_folder(root, folder, split, **options)
        if not hasattr(meta, "thing_classes"):
            meta.set(thing_classes=_resolve_classes(options.get("classes"), folder_classes(root, folder), folder))
        return records

    DatasetCatalog.register(name, load)
    fields = dict(evaluator_type="cxr_classification", dataset=folder, split=split, task="single_label", **options)
    if classes:
        fields["thing_classes"] = list(classes)
    fields.pop("classes", None)
    meta.set(**fields)
