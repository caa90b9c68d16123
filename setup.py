from setuptools import find_packages, setup

setup(
    name="cxr_det",
    version="0.1.0",
    description="detectron2 extension for lesion detection on chest X-rays (REFLACX, VinDr-CXR)",
    packages=find_packages(include=["cxr_det", "cxr_det.*"]),
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
        "pydicom>=2.3",
        "ensemble-boxes",
        "matplotlib",
        "tqdm",
        "tabulate",
    ],
    extras_require={"test": ["pytest", "pytest-timeout"]},
)
