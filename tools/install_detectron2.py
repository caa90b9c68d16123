#!/usr/bin/env python
"""Install detectron2 into the current interpreter when no working copy is importable.

Meta publishes no detectron2 on PyPI. The only copy of its v0.6 Python sources there is
the sdist ``pb1-detectron2==0.6``, which lacks the C++ sources and so cannot be built as
shipped. This script downloads that sdist, checks its sha256, and installs its
``detectron2/`` package folder as a pure-Python distribution named ``detectron2``. The
parts that need the C++ extension (rotated boxes, deformable convolution, the fast COCO
evaluator) are handled by :mod:`cxr_det.compat`.
"""
import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"
SDIST_FILE = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DIST_VERSION = "0.6+py"
RUNTIME_REQUIREMENTS = [
    "Pillow",
    "matplotlib",
    "pycocotools",
    "termcolor",
    "yacs",
    "tabulate",
    "cloudpickle",
    "tqdm",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf",
    "hydra-core",
]

SETUP_PY = """\
from setuptools import setup, find_namespace_packages
setup(
    name="detectron2",
    version={version!r},
    description="detectron2 v0.6 Python sources (from pb1-detectron2), without the C++ extension",
    packages=find_namespace_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"": ["*.yaml", "*.py"]}},
    include_package_data=True,
    install_requires={requirements!r},
    python_requires=">=3.8",
)
"""


def detectron2_importable() -> bool:
    if importlib.util.find_spec("detectron2") is None:
        return False
    # Only what imports before cxr_det.compat's fixes (detectron2.modeling needs them with v0.6).
    probe = "import detectron2, detectron2.config"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if detectron2 imports")
    args = parser.parse_args()

    if not args.force and detectron2_importable():
        import detectron2

        print(f"detectron2 {detectron2.__version__} already importable; nothing to do")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pip("download", "--quiet", "--no-deps", "--no-build-isolation", SDIST, "-d", str(tmp))
        archive = tmp / SDIST_FILE
        if not archive.exists():
            raise SystemExit(f"pip download did not produce {archive}")
        actual = sha256(archive)
        if actual != SDIST_SHA256:
            raise SystemExit(
                f"sha256 mismatch for {SDIST_FILE}: expected {SDIST_SHA256}, got {actual}; refusing to install"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        source = tmp / "pb1-detectron2-0.6"
        if not (source / "detectron2" / "model_zoo" / "configs").is_dir():
            raise SystemExit(f"{SDIST_FILE} does not contain detectron2/model_zoo/configs")
        build = tmp / "build"
        build.mkdir()
        (source / "detectron2").rename(build / "detectron2")
        (build / "setup.py").write_text(
            SETUP_PY.format(version=DIST_VERSION, requirements=RUNTIME_REQUIREMENTS)
        )
        pip("install", "--quiet", str(build))
    print(f"installed detectron2 {DIST_VERSION} (pure Python) from {SDIST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
