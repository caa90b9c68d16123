# make setup: build .venv from nothing (idempotent). make demo / make test run it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision tested together here; the CPU torch wheel on disk must never be picked
# (PyPI's torchvision cannot run its ops beside it).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Grad-CAM (cxr_det.utils.saliency), installed with --no-deps: what it imports (torch, torchvision,
# OpenCV, scikit-learn, matplotlib) is installed above, and pip must neither re-resolve the
# pinned torch nor bring in opencv-python, whose cv2 would clash with opencv-python-headless.
GRADCAM_PINS := grad-cam==1.5.7 ttach==0.0.3
DEMO_ROOT ?= datasets/synthetic
DEMO_IMAGES ?= 480
DEMO_OUT ?= output/demo_clinical
DEMO_CONFIG ?= configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml
# make demo-classification: synthetic CheXpert (its own root: the generator owns chexpert/)
CLS_ROOT ?= datasets/synthetic_chexpert
CLS_PATIENTS ?= 600
CLS_OUT ?= output/demo_classification/clinical
CLS_CONFIG ?= configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml

.PHONY: setup browser test demo demo-classification clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: setup.py Makefile tools/install_detectron2.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --quiet -e '.[test]' $(TORCH_PINS)
	$(PY) -m pip install --quiet --no-deps $(GRADCAM_PINS)
	$(PY) -c "import torch, torchvision; from torchvision.ops import nms; \
	  nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5); \
	  import cxr_det; print('setup ok: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

# tests/serve/test_serve_browser.py drives Debian's Chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for tests/serve/test_serve_browser.py"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: setup browser
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/make_synthetic.py --format reflacx --out $(DEMO_ROOT) --images $(DEMO_IMAGES) --seed 0
	CXR_DATASETS=$(DEMO_ROOT) $(PY) tools/train_net.py --config-file $(DEMO_CONFIG) OUTPUT_DIR $(DEMO_OUT)
	CXR_DATASETS=$(DEMO_ROOT) $(PY) tools/visualize_json_results.py --config-file $(DEMO_CONFIG) --dataset reflacx_val \
	  --input $(DEMO_OUT)/inference/reflacx_val/coco_instances_results.json --output $(DEMO_OUT)/predictions

# Classifier demo: synthetic CheXpert, train the Age/Sex-fused ResNet-18 (evaluation with ROC and
# PR curves under $(CLS_OUT)/inference/), then Grad-CAM pictures of the test split.
demo-classification: setup
	$(PY) tools/make_synthetic.py --format chexpert --out $(CLS_ROOT) --patients $(CLS_PATIENTS) --size 64 --seed 0
	CXR_DATASETS=$(CLS_ROOT) $(PY) tools/train_net.py --config-file $(CLS_CONFIG) OUTPUT_DIR $(CLS_OUT)
	CXR_DATASETS=$(CLS_ROOT) $(PY) tools/visualize_saliency.py --run $(CLS_OUT) --dataset chexpert_valid \
	  --max-images 12 --output $(CLS_OUT)/gradcam

clean:
	rm -rf $(VENV) output
