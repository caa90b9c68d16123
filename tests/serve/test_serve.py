"""The inference web service (issue 13): every route and error path, through FastAPI's TestClient,
on tiny runs trained here (CPU, seconds)."""
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import cxr_det  # noqa: F401
from cxr_det.synthetic.dicom_writer import write_dicom
from helpers import DEMO_CONFIG, load_tool, loopback_urlopen, train_tiny_run

ROOT = Path(__file__).resolve().parents[2]
# Every box the barely trained models produce is returned, so that outputs can be compared.
ALL_BOXES = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _app(run, opts=ALL_BOXES, **kwargs):
    from cxr_det.engine.run_config import inference_config
    from cxr_det.serve import create_app

    return create_app(inference_config(str(run), "", list(opts)), **kwargs)


@pytest.fixture(scope="module")
def image_run(tiny_reflacx, tmp_path_factory):
    return train_tiny_run(DEMO_CONFIG, tiny_reflacx, tmp_path_factory.mktemp("runs") / "image_only")


@pytest.fixture(scope="module")
def clinical_client(tiny_clinical_run):
    return TestClient(_app(tiny_clinical_run))


@pytest.fixture(scope="module")
def image_client(image_run):
    return TestClient(_app(image_run))


@pytest.fixture(scope="module")
def xray(tiny_reflacx):
    """One synthetic chest X-ray (JPEG bytes) and its pixels."""
    path = sorted((tiny_reflacx / "mimic-cxr-jpg").rglob("*.jpg"))[0]
    return path.read_bytes(), np.asarray(Image.open(path).convert("L"))


def _post(client, content, name="xray.jpg", headers=None, **fields):
    return client.post("/api/predict", files={"file": (name, content, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()}, headers=headers or {})


# --------------------------------------------------------------------------- routes


def test_health_and_model_describe_the_clinical_model(clinical_client):
    assert clinical_client.get("/api/health").json() == {"status": "ok"}
    info = clinical_client.get("/api/model").json()
    assert info["task"] == "detection" and len(info["class_names"]) == 5
    assert info["masks"] is False and info["ellipses"] is False
    assert info["score_threshold"] == 0.3 and info["min_score"] == 0.0
    features = {f["name"]: f for f in info["clinical_features"]}
    assert {"age", "temperature", "heartrate", "gender"} <= set(features)
    age = features["age"]
    assert (age["kind"], age["unit"], age["min"], age["max"]) == ("number", "years", 0.0, 110.0)
    assert 0 < age["training_mean"] < 110
    assert features["temperature"]["unit"].startswith("degrees F") and features["temperature"]["max"] == 110.0
    gender = features["gender"]
    assert gender["kind"] == "category" and gender["values"] == ["F", "M"] and gender["training_mean"] is None


def test_image_only_model_has_no_clinical_features_and_default_min_score(image_run):
    client = TestClient(_app(image_run, opts=()))
    info = client.get("/api/model").json()
    assert info["clinical_features"] == [] and info["min_score"] == pytest.approx(0.05)


def test_page_and_static_assets(clinical_client):
    page = clinical_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert clinical_client.get("/static/index.html").status_code == 200
    assert clinical_client.get("/static/no-such-asset.js").status_code == 404


def test_predict_returns_boxes_in_the_upload_pixels_sorted_by_score(clinical_client, xray):
    content, pixels = xray
    response = _post(clinical_client, content, age=60, gender="F")
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"image", "detections", "image_scores", "clinical_used", "warnings"}
    assert result["image"] == {"width": pixels.shape[1], "height": pixels.shape[0]}
    detections = result["detections"]
    assert detections, "min_score 0 returns every box"
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True)
    names = clinical_client.get("/api/model").json()["class_names"]
    for d in detections:
        x0, y0, x1, y1 = d["bbox"]
        assert 0 <= x0 <= x1 <= pixels.shape[1] and 0 <= y0 <= y1 <= pixels.shape[0]
        assert d["category"] == names[d["category_id"]]
    assert set(result["image_scores"]) == set(names)
    best = {}
    for d in detections:
        best[d["category"]] = max(best.get(d["category"], 0), d["score"])
    assert all(result["image_scores"][c] == pytest.approx(s, abs=1e-4) for c, s in best.items())
    assert result["clinical_used"]["age"] == {"raw": "60", "value": 60.0, "status": "ok"}
    assert result["clinical_used"]["heartrate"] == {"raw": None, "value": None, "status": "missing"}
    assert any(w.startswith("missing: temperature") for w in result["warnings"])


def test_score_threshold_filters_and_bad_values_are_400(clinical_client, xray):
    content, _ = xray
    everything = _post(clinical_client, content).json()["detections"]
    cut = everything[len(everything) // 2]["score"]
    kept = _post(clinical_client, content, score_threshold=cut).json()["detections"]
    assert kept == [d for d in everything if d["score"] >= cut] and 0 < len(kept) < len(everything) + 1
    for bad in ("abc", "1.5", "-0.1", "nan"):
        response = _post(clinical_client, content, score_threshold=bad)
        assert response.status_code == 400 and "score_threshold" in response.json()["detail"], bad


def test_clinical_fields_change_a_clinical_models_output_and_not_an_image_only_ones(
        clinical_client, image_client, xray):
    content, _ = xray
    young = dict(age=25, temperature=98.2, heartrate=70, o2sat=99, gender="F")
    old = dict(age=90, temperature=103.5, heartrate=140, o2sat=82, gender="M")
    a, b = (_post(clinical_client, content, **v).json() for v in (young, old))
    assert a["detections"] != b["detections"]
    a, b = (_post(image_client, content, **v).json() for v in (young, old))
    assert a["detections"] == b["detections"] and a["image_scores"] == b["image_scores"]
    assert a["clinical_used"] == {}
    assert any("does not use clinical data" in w and "age" in w for w in a["warnings"])


def test_text_and_implausible_clinical_values_are_cleaned_like_training_data(clinical_client, xray):
    content, _ = xray
    response = _post(clinical_client, content, age="sixty", temperature="38.5", o2sat="130", gender="x",
                     heartrate="80-90", Age="61", resprate="")
    assert response.status_code == 200, response.text
    result = response.json()
    used = result["clinical_used"]
    assert used["age"] == {"raw": "sixty", "value": None, "status": "not_a_number"}
    assert used["temperature"] == {"raw": "38.5", "value": 101.3, "status": "converted"}
    assert used["o2sat"] == {"raw": "130", "value": None, "status": "out_of_range"}
    assert used["gender"] == {"raw": "x", "value": None, "status": "unknown_category"}
    assert used["heartrate"] == {"raw": "80-90", "value": 85.0, "status": "converted"}
    assert used["resprate"]["status"] == "missing"
    text = " | ".join(result["warnings"])
    assert "unknown field 'Age' (did you mean 'age'?)" in text
    assert "age 'sixty' is not a number" in text and "outside the plausible range 50..100" in text


@pytest.mark.parametrize("kind", ["png16", "tiff16", "png8"])
def test_other_image_formats_are_accepted(clinical_client, xray, kind):
    _, pixels = xray
    buffer = io.BytesIO()
    if kind == "png8":
        Image.fromarray(pixels).save(buffer, format="PNG")
    else:
        Image.fromarray(pixels.astype(np.uint16) * 257).save(buffer, format="PNG" if kind == "png16" else "TIFF")
    response = _post(clinical_client, buffer.getvalue(), name=f"x.{'tif' if kind == 'tiff16' else 'png'}")
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": pixels.shape[1], "height": pixels.shape[0]}


def test_monochrome1_dicom_gives_boxes_in_dicom_pixels(clinical_client, xray, tmp_path):
    from cxr_det.data.image_io import read_image

    _, pixels = xray
    stored = ((255 - pixels[:, :150].astype(np.uint16)) * 16)  # inverted, 12 bits; 150 columns wide
    path = write_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, photometric="MONOCHROME1")
    service = clinical_client.app.state.service
    for name in ("m1.dcm", "scan.bin"):  # by the suffix, and by the DICM magic at offset 128
        result = _post(clinical_client, path.read_bytes(), name=name, age=50).json()
        assert result["image"] == {"width": 150, "height": pixels.shape[0]}
        expected = service.predictor(read_image(path, service.cfg.INPUT.FORMAT), {"age": "50"})["instances"]
        boxes = np.array([d["bbox"] for d in result["detections"]])
        order = np.argsort(-expected.scores.numpy(), kind="stable")
        np.testing.assert_allclose(boxes, expected.pred_boxes.tensor.numpy()[order], atol=0.01)
        assert boxes[:, 2].max() <= 150 and boxes[:, 3].max() <= pixels.shape[0]


def test_dicom_source_model_takes_age_and_sex_from_the_header_and_echoes_no_tag(tiny_clinical_run, xray, tmp_path):
    state = torch.load(tiny_clinical_run / "model_final.pth", map_location="cpu", weights_only=True)
    state["cxr_run"]["config"] = state["cxr_run"]["config"].replace("SOURCE: mimic-iv-ed", "SOURCE: dicom")
    torch.save(state, tmp_path / "model_dicom_source.pth")
    client = TestClient(_app(tmp_path / "model_dicom_source.pth"))
    _, pixels = xray
    path = write_dicom(tmp_path / "a.dicom", pixels.astype(np.uint16) * 16, bits_stored=12, patient_age="065Y",
                       patient_sex="F", patient_id="PID-8812734", PatientName="Doe^Jane")
    response = _post(client, path.read_bytes(), name="a.dicom", temperature="99")
    result = response.json()
    assert result["clinical_used"]["age"] == {"raw": 65.0, "value": 65.0, "status": "ok"}
    assert result["clinical_used"]["gender"] == {"raw": "F", "value": "F", "status": "ok"}
    assert any("taken from the DICOM header" in w for w in result["warnings"])
    for secret in ("PID-8812734", "Doe", "065Y"):
        assert secret not in response.text
    # The form wins over the header.
    result = _post(client, path.read_bytes(), name="a.dicom", age="40").json()
    assert result["clinical_used"]["age"]["value"] == 40.0 and result["clinical_used"]["gender"]["value"] == "F"


# --------------------------------------------------------------------------- errors


def test_not_an_image_is_400_naming_the_problem(clinical_client):
    response = _post(clinical_client, b"patient notes, not pixels", name="notes.txt")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "notes.txt" in detail and "not a readable image" in detail and "BytesIO" not in detail
    response = _post(clinical_client, b"\x89PNG\r\n\x1a\n truncated", name="x.dcm")
    assert response.status_code == 400 and "x.dcm" in response.json()["detail"]
    assert "empty file" in _post(clinical_client, b"", name="e.png").json()["detail"]
    response = clinical_client.post("/api/predict", data={"age": "50"})
    assert response.status_code == 400 and "'file'" in response.json()["detail"]
    response = clinical_client.post("/api/predict", data={"file": "not a file"})
    assert response.status_code == 422 and response.json()["detail"].startswith("file: ")
    response = clinical_client.post("/api/predict", files=[("file", ("a.png", b"x")), ("file", ("b.png", b"y"))])
    assert response.status_code == 400 and "exactly one" in response.json()["detail"]


def test_over_the_upload_limit_is_413(tiny_clinical_run, xray):
    client = TestClient(_app(tiny_clinical_run, max_upload_mb=0.001))  # 1048 bytes
    content, _ = xray
    assert len(content) > 1100
    response = _post(client, content)
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]
    assert "--max-upload-mb" in response.json()["detail"]

    def chunks():  # no Content-Length: counted while read
        for i in range(0, len(content), 256):
            yield content[i:i + 256]

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    assert client.get("/api/health").json() == {"status": "ok"}


def test_uploads_over_a_mebibyte_are_never_spooled_to_disk(clinical_client, monkeypatch):
    from starlette import formparsers

    class NoDisk(formparsers.SpooledTemporaryFile):
        def rollover(self):
            raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", NoDisk)
    noise = (np.random.default_rng(0).random((1100, 1100)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 2**20
    response = _post(clinical_client, buffer.getvalue(), name="big.png")
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 1100, "height": 1100}


def test_api_key_guards_every_api_route_but_health(tiny_clinical_run, xray):
    client = TestClient(_app(tiny_clinical_run, api_key="s3cret"))
    assert client.get("/api/health").status_code == 200
    for headers in ({}, {"X-API-Key": "wrong"}):
        assert client.get("/api/model", headers=headers).status_code == 401
        response = _post(client, xray[0], headers=headers)
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    key = {"X-API-Key": "s3cret"}
    assert client.get("/api/model", headers=key).status_code == 200
    assert _post(client, xray[0], headers=key).status_code == 200
    assert client.get("/").status_code == 200  # the page itself asks for the key


def test_openapi_schema_has_the_typed_models(clinical_client):
    schema = clinical_client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("Prediction", "Detection", "ClinicalValue", "ModelInfo", "ClinicalFeature", "ImageSize",
                 "ErrorResponse"):
        assert name in components, name
    assert set(components["ClinicalValue"]["properties"]["status"]["enum"]) == {
        "ok", "missing", "not_a_number", "out_of_range", "unknown_category", "converted"}
    post = schema["paths"]["/api/predict"]["post"]
    ok = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/Prediction")
    assert {"400", "401", "413"} <= set(post["responses"])
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = components[body["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert {"file", "score_threshold", "age", "temperature", "gender"} <= set(form)
    assert "years" in json.dumps(form["age"])
    model = schema["paths"]["/api/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert model["$ref"].endswith("/ModelInfo")


# --------------------------------------------------------------------------- tools/serve.py


def test_serve_tool_refuses_bad_arguments(tmp_path, capsys):
    serve = load_tool("serve")
    with pytest.raises(SystemExit):
        serve.parse_args([])
    assert "--run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve.parse_args(["--run", "x", "--workers", "0"])
    with pytest.raises(SystemExit, match="no such checkpoint file or run folder"):
        serve.main(["--run", str(tmp_path / "nothing")])
    args = serve.parse_args(["--run", "x"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_upload_mb == 64 and args.workers == 1


def test_app_factory_builds_from_the_environment(tiny_clinical_run, monkeypatch):
    from cxr_det.serve.app import SETTINGS_ENV, app_from_env

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    with pytest.raises(RuntimeError, match=SETTINGS_ENV):
        app_from_env()
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"run": str(tiny_clinical_run), "opts": ALL_BOXES,
                                                 "max_upload_mb": 1, "api_key": "k"}))
    client = TestClient(app_from_env())
    assert client.get("/api/model").status_code == 401
    assert client.get("/api/model", headers={"X-API-Key": "k"}).json()["min_score"] == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_tool_starts_two_workers_on_loopback(tiny_clinical_run):
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, str(ROOT / "tools/serve.py"), "--run", str(tiny_clinical_run),
                                "--port", str(port), "--workers", "2", "--log-level", "warning", "MODEL.DEVICE", "cpu"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, body = time.time() + 120, None
        while time.time() < deadline and process.poll() is None:
            try:
                with loopback_urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, process.communicate(timeout=5)[0].decode(errors="replace")[-3000:]
        assert len(body["class_names"]) == 5
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_preview_only_on_request_and_shows_the_dicom_as_the_model_read_it(clinical_client, xray, tmp_path):
    """Browsers cannot show a DICOM: the page asks for the server's rendering. Without the
    request no pixel data goes back (privacy)."""
    import base64
    import io

    from cxr_det.data.image_io import read_image

    _, pixels = xray
    stored = ((255 - pixels.astype(np.uint16)) * 16)
    path = write_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, photometric="MONOCHROME1")
    plain = _post(clinical_client, path.read_bytes(), name="m1.dcm").json()
    assert "preview" not in plain or plain["preview"] is None
    asked = clinical_client.post("/api/predict", files={"file": ("m1.dcm", path.read_bytes())},
                                 data={"preview": "true"}).json()
    assert asked["preview"].startswith("data:image/png;base64,")
    shown = np.array(Image.open(io.BytesIO(base64.b64decode(asked["preview"].split(",", 1)[1]))))
    expected = read_image(path, "L")[:, :, 0]
    assert shown.shape == expected.shape and np.array_equal(shown, expected)  # small image: not shrunk
