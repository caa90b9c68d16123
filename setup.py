from setuptools import find_packages, setup

setup(
    name="cxr_det",
    version="0.1.0",
    license="Apache-2.0",
    description="detectron2 extension for lesion detection on chest X-rays (REFLACX, VinDr-CXR)",
    packages=find_packages(include=["cxr_det", "cxr_det.*"]),
    # the inference page served by cxr_det.serve (plain HTML/JS/CSS, no build step)
    package_data={"cxr_det.serve": ["static/*"]},
    python_requires=">=3.9",
    install_requires=[
        # torch/torchvision are pinned by the Makefile (see shared install notes); any pair
        # whose torchvision.ops work is accepted here.
        "torch>=2.0",
        "torchvision>=0.15",
        "detectron2>=0.6",
        "fvcore>=0.1.5",
        "numpy",
        "opencv-python-headless",
        "pycocotools",
        "faster-coco-eval",
        "albumentations>=1.3",
        "pandas",
        # pydicom 3's pixel plugins and the decoders they use, one per DICOM transfer syntax
        # (docs/images.md has the table and the licences; none is GPL):
        "pydicom>=3.0",
        "python-gdcm>=3.0.10",  # JPEG Baseline/Extended/Lossless (.4.50/.51/.57/.70); GDCM BSD-3, wrapper Apache-2.0
        "pylibjpeg>=2.0",  # MIT
        "pylibjpeg-openjpeg>=2.3",  # JPEG 2000 and HTJ2K (.4.90/.91/.201-.203); MIT, OpenJPEG BSD-2
        "pylibjpeg-rle>=2.0",  # RLE Lossless (.5), faster than pydicom's own; MIT
        "pyjpegls>=1.2",  # JPEG-LS (.4.80/.81); MIT, CharLS BSD-3
        "Pillow",
        "ensemble-boxes",
        # the classification metrics (cxr_det.evaluation.classification) are scikit-learn's
        "scikit-learn",
        "matplotlib",
        "tqdm",
        "tabulate",
        "tensorboard",  # the trainer's event files (detectron2's TensorboardXWriter)
        # the inference web service (cxr_det.serve, tools/serve.py)
        "fastapi",
        "uvicorn>=0.30",  # timeout_worker_healthcheck (cxr_det.serve.launch)
        "python-multipart",
        # tools/sweep.py: SLURM job arrays (and local runs) of a grid of config overrides
        "submitit",
    ],
    # map-boxes, monai: reference scorers the evaluation tests compare against (scikit-learn,
    # the third, is installed anyway).
    extras_require={"test": ["pytest", "pytest-timeout", "hypothesis", "map-boxes", "monai", "httpx",
                             # drives the system's Chromium (Debian chromium, installed by .ci/run)
                             # in tests/serve/test_serve_browser.py; no browser download
                             "playwright"]},
)
