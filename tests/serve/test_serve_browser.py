"""The inference page (issue 13) end to end in a real browser: headless Chromium (Debian's
``chromium`` package) driven by Playwright, against ``tools/serve.py`` on a free loopback port
with a tiny trained demo model.

Also the command that makes the README's screenshot:

    python tests/serve/test_serve_browser.py --screenshot docs/serve_screenshot.png [--run output/demo_clinical]

(``--run`` defaults to ``output/demo_clinical`` when ``make demo`` has trained it, else a
tiny model is trained in a temporary folder.)

Needs ``chromium`` (``apt-get install -y --no-install-recommends chromium``; ``.ci/run``
does it) and the ``playwright`` package (``make setup`` installs it from the test extra);
no Playwright browser download.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import loopback_urlopen  # noqa: E402  (tests/ on the path when run as a script)

CLINICAL_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_CHROMIUM = "apt-get update && apt-get install -y --no-install-recommends chromium (make test does it)"
# Lowest score the API returns for the test's server: the 3-iteration model's scores are low.
MIN_SCORE = "0.01"
VIEWPORT = {"width": 1280, "height": 960}


# ---------------------------------------------------------------- browser and server
def chromium_executable() -> str:
    path = os.environ.get("CXR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise RuntimeError(f"Chromium not found ({path}; set CXR_CHROMIUM, or have `chromium` on PATH); "
                           f"install Debian's package: {INSTALL_CHROMIUM}")
    return path


def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError as e:
        raise RuntimeError(f"the playwright package is missing ({e}): `make setup` installs the test extra, "
                           f"or {sys.executable} -m pip install playwright (no `playwright install`: "
                           "the test uses the system's chromium)") from e
    return start()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, headers=None, timeout=5):
    request = urllib.request.Request(url, headers=headers or {})
    with loopback_urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@contextmanager
def serve(run: Path, log: Path, api_key=None, timeout=180):
    """``tools/serve.py --run RUN`` in a subprocess on a free loopback port; yields its URL."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("CXR_SERVE_API_KEY", None)
    if api_key:
        env["CXR_SERVE_API_KEY"] = api_key  # not in the process list
    cmd = [sys.executable, str(ROOT / "tools/serve.py"), "--run", str(run), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "MODEL.DEVICE", "cpu",
           "MODEL.ROI_HEADS.SCORE_THRESH_TEST", MIN_SCORE]
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tools/serve.py exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if _get(url + "/api/health", timeout=2) == {"status": "ok"}:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tools/serve.py not answering after {timeout} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def browser_page():
    executable = chromium_executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            yield page
        finally:
            browser.close()


def train_tiny_model(data: Path, out: Path) -> Path:
    """The demo clinical model, 3 iterations on tiny images (as tests/engine/test_predict.py)."""
    from helpers import SMALL_TRAIN_OPTS, load_tool

    from cxr_det.engine import argument_parser

    args = argument_parser().parse_args(["--config-file", str(CLINICAL_CONFIG), "CXR.DATASET_ROOT", str(data),
                                         "OUTPUT_DIR", str(out), *SMALL_TRAIN_OPTS, "SOLVER.MAX_ITER", "3",
                                         "DATASETS.TEST", "()"])
    load_tool("train_net").main(args)
    return out


def synthetic_xray(data: Path) -> Path:
    return sorted((data / "mimic-cxr-jpg").rglob("*.jpg"))[0]


# ---------------------------------------------------------------- page actions
def analyse(page, url, image: Path, clinical: dict):
    """Open the page, fill the clinical fields, upload the image, wait for the findings."""
    page.goto(url + "/")
    for name in clinical:
        page.wait_for_selector(f"#clin-{name}")
    for name, value in clinical.items():
        field = page.locator(f"#clin-{name}")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.set_input_files("#file", str(image))
    page.click("#analyze")
    page.wait_for_selector("#result-body:not([hidden])", timeout=60_000)


def set_threshold(page, key: str):
    """Move the slider with the keyboard (Home = lowest, End = 1), as a user would."""
    page.focus("#threshold")
    page.keyboard.press(key)


def rows(page) -> int:
    return page.locator("#findings tbody tr").count()


def coloured_pixels(page, box=None, margin=4) -> int:
    """Pixels of the canvas that are not grey (the X-ray is grey; outlines and labels are not),
    in the whole canvas or around the left edge of ``box`` (image pixels) at half its height:
    a point on the outline for a rectangle and for the ellipse inscribed in it."""
    return page.evaluate(
        """([box, margin]) => {
            const canvas = document.getElementById("canvas");
            const scale = Number(canvas.dataset.scale);
            let x = 0, y = 0, w = canvas.width, h = canvas.height;
            if (box) {
                x = Math.max(0, Math.round(box[0] * scale) - margin);
                y = Math.max(0, Math.round((box[1] + box[3]) / 2 * scale) - margin);
                w = Math.min(canvas.width - x, 2 * margin + 1);
                h = Math.min(canvas.height - y, 2 * margin + 1);
            }
            const data = canvas.getContext("2d").getImageData(x, y, w, h).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                const r = data[i], g = data[i + 1], b = data[i + 2];
                if (Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
            }
            return n;
        }""", [box, margin])


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def browser_ready():
    """Chromium and Playwright present, checked before any training: a failure naming the fix,
    never a skip (CI must run this test)."""
    try:
        chromium_executable()
        sync_playwright()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def demo(browser_ready, tmp_path_factory):
    from cxr_det.synthetic import make_reflacx

    data = tmp_path_factory.mktemp("cxr")
    make_reflacx(data, 20, seed=5, size=160)
    run = train_tiny_model(data, tmp_path_factory.mktemp("runs") / "clinical")
    return {"data": data, "run": run, "image": synthetic_xray(data)}


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve(demo["run"], log) as url:
        yield url


@pytest.fixture
def page(browser_ready):
    with browser_page() as page:
        yield page


def test_upload_fill_two_fields_findings_drawn_listed_and_filtered_without_a_request(server, demo, page, tmp_path):
    model = _get(server + "/api/model")
    numeric = [f for f in model["clinical_features"] if f["kind"] == "number"]
    assert len(numeric) >= 2, model["clinical_features"]
    predict_requests = []
    page.on("request", lambda r: predict_requests.append(r) if r.url.endswith("/api/predict") else None)

    # The form is built from /api/model: a labelled field per feature, with its unit and range.
    page.goto(server + "/")
    page.wait_for_selector(f"#clin-{numeric[0]['name']}")
    assert page.locator("#clinical-fields input, #clinical-fields select").count() == len(model["clinical_features"])
    first = page.locator(f"label[for=clin-{numeric[0]['name']}]").inner_text()
    assert numeric[0]["unit"] in first
    assert f"{numeric[0]['min']:g}" in page.locator(f"#clin-{numeric[0]['name']}-hint").inner_text()

    clinical = {numeric[0]["name"]: "67", numeric[1]["name"]: "38.6"}
    analyse(page, server, demo["image"], clinical)
    assert len(predict_requests) == 1
    result = page.evaluate("window.cxrPage.result")
    detections = result["detections"]
    assert detections, "the demo model returned no box at the lowest score"
    # The slider starts at the model's default; the page has the boxes under it too (it asked
    # down to the API's lowest score), to show them without a new request.
    assert float(page.input_value("#threshold")) == pytest.approx(model["score_threshold"])
    assert min(d["score"] for d in detections) < model["score_threshold"]
    assert set(result["image"]) >= {"width", "height"}

    # Both fields reached the server (clinical_used echoes what was entered).
    used = page.locator("#clinical-used tbody tr")
    entered = {used.nth(i).locator("td").nth(0).inner_text(): used.nth(i).locator("td").nth(1).inner_text()
               for i in range(used.count())}
    assert {k: entered.get(k) for k in clinical} == clinical, entered

    # Lowest threshold: every finding listed and drawn.
    set_threshold(page, "Home")
    low = float(page.input_value("#threshold"))
    expected = sum(d["score"] >= low - 1e-9 for d in detections)
    assert rows(page) == expected > 0
    assert page.inner_text("#count").startswith(f"{expected} of {len(detections)}")
    top = detections[0]
    top_row = page.locator("#findings tbody tr").first.inner_text()
    assert top["category"] in top_row and f"{top['score']:.3f}" in top_row
    assert coloured_pixels(page, top["bbox"]) > 0, "nothing drawn where the best finding's outline is"
    assert coloured_pixels(page) > 0
    page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)
    assert (tmp_path / "serve_page.png").stat().st_size > 10_000

    # Highest threshold: fewer findings listed, fewer drawn; no new request.
    set_threshold(page, "End")
    high = float(page.input_value("#threshold"))
    assert high == 1.0
    kept = sum(d["score"] >= high - 1e-9 for d in detections)
    assert rows(page) == kept < expected
    assert page.inner_text("#count").startswith(f"{kept} of {len(detections)}")
    if kept == 0:
        assert coloured_pixels(page) == 0, "outlines left on the canvas at threshold 1"
        assert page.is_visible("#no-findings")
    assert len(predict_requests) == 1, "the slider sent a new request"

    # Image-level probabilities: one row per class.
    assert page.locator("#image-scores tbody tr").count() == len(result["image_scores"]) == len(model["class_names"])

    # The JSON download is the server's answer.
    with page.expect_download() as download:
        page.click("#download")
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["detections"] == detections and "preview" not in saved
    assert page.errors == []


def test_an_error_shows_the_servers_detail(server, page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an X-ray at all\n")
    page.goto(server + "/")
    page.wait_for_selector("#clinical-fields .field")
    page.set_input_files("#file", str(notes))
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as answer:
        page.click("#analyze")
    assert answer.value.status == 400
    detail = answer.value.json()["detail"]
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert detail in error.inner_text() and "400" in error.inner_text()
    assert page.get_attribute("#error", "role") == "alert"
    assert page.is_hidden("#result-body")
    assert page.errors == []


def test_a_server_with_an_api_key_asks_for_it(demo, page, tmp_path):
    with serve(demo["run"], tmp_path / "serve.log", api_key="s3cret-key") as url:
        page.goto(url + "/")
        page.locator("#apikey").wait_for(state="visible")
        assert "API key" in page.inner_text("#error")
        page.fill("#apikey", "s3cret-key")
        page.set_input_files("#file", str(demo["image"]))
        page.click("#analyze")
        page.wait_for_selector("#result-body:not([hidden])", timeout=60_000)
        assert page.is_hidden("#error")
        assert page.locator("#clinical-fields .field").count() > 0
    assert page.errors == []


# ---------------------------------------------------------------- the README's screenshot
def make_screenshot(output: Path, run: Path = None, image: Path = None, threshold_steps: int = 0):
    """The page after an analysis, as the README shows it."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if run is None or image is None:
            from cxr_det.synthetic import make_reflacx

            make_reflacx(tmp / "cxr", 20, seed=5, size=160)
            image = image or synthetic_xray(tmp / "cxr")
            run = run or train_tiny_model(tmp / "cxr", tmp / "run")
        with serve(run, tmp / "serve.log") as url, browser_page() as page:
            model = _get(url + "/api/model")
            values = {"age": "67", "temperature": "38.6", "heartrate": "104", "o2sat": "91", "gender": "F"}
            names = {f["name"] for f in model["clinical_features"]}
            analyse(page, url, image, {k: v for k, v in values.items() if k in names})
            if threshold_steps:
                set_threshold(page, "ArrowLeft" if threshold_steps < 0 else "ArrowRight")
                for _ in range(abs(threshold_steps) - 1):
                    page.keyboard.press("ArrowLeft" if threshold_steps < 0 else "ArrowRight")
            page.evaluate("document.activeElement && document.activeElement.blur()")
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
            print(f"{output}: {page.inner_text('#count')} (threshold {page.input_value('#threshold')}), "
                  f"{model['task']} model from {run}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Screenshot of the inference page (for the README)")
    parser.add_argument("--screenshot", required=True, type=Path, help="PNG to write, e.g. docs/serve_screenshot.png")
    parser.add_argument("--run", type=Path, default=None,
                        help="trained run to serve (default: output/demo_clinical if trained, else a tiny model)")
    parser.add_argument("--image", type=Path, default=None,
                        help="X-ray to upload (default: the first image of datasets/synthetic, else a synthetic one)")
    parser.add_argument("--threshold-steps", type=int, default=0,
                        help="move the score slider by this many 0.01 steps from its default before the shot")
    args = parser.parse_args(argv)
    run, image = args.run, args.image
    if run is None and (ROOT / "output/demo_clinical/model_final.pth").is_file():
        run = ROOT / "output/demo_clinical"
    if image is None and run is not None and (ROOT / "datasets/synthetic/mimic-cxr-jpg").is_dir():
        image = synthetic_xray(ROOT / "datasets/synthetic")
    try:
        make_screenshot(args.screenshot, run, image, args.threshold_steps)
    except RuntimeError as e:
        sys.exit(f"test_serve_browser.py: {e}")


if __name__ == "__main__":
    main()
