"""Typed request and response bodies of the inference service (its OpenAPI schema).

Units: boxes and image sizes are in the uploaded image's own pixels (a DICOM's grid);
scores and probabilities are in 0..1; clinical values in the units of
:data:`cxr_det.data.clinical.cleaning.FEATURE_DESCRIPTIONS`.
"""
from typing import Dict, List, Literal, Optional, Union

from pydantic import BaseModel, Field

__all__ = [
    "CLINICAL_STATUSES",
    "Health",
    "ClinicalFeature",
    "ModelInfo",
    "ImageSize",
    "Detection",
    "ClinicalValue",
    "Prediction",
    "ErrorResponse",
]

#: What cleaning did to one clinical value (see :class:`ClinicalValue`).
CLINICAL_STATUSES = ("ok", "missing", "not_a_number", "out_of_range", "unknown_category", "converted")
ClinicalStatus = Literal["ok", "missing", "not_a_number", "out_of_range", "unknown_category", "converted"]


class Health(BaseModel):
    """``GET /api/health``: the service is up (never needs an API key)."""

    status: Literal["ok"] = "ok"


class ClinicalFeature(BaseModel):
    """One clinical input of the model: a form field of ``POST /api/predict``."""

    name: str = Field(description="form field name, as in CXR.CLINICAL (e.g. age, temperature, gender)")
    kind: Literal["number", "category"]
    unit: str = Field("", description="unit or scale (e.g. 'beats/min'); for categories the usual values")
    min: Optional[float] = Field(None, description="lowest plausible value (numbers); below it = missing")
    max: Optional[float] = Field(None, description="highest plausible value (numbers); above it = missing")
    values: Optional[List[str]] = Field(None, description="categories: the values seen in training")
    training_mean: Optional[float] = Field(None, description="numbers: the training mean, used when blank")


class ModelInfo(BaseModel):
    """``GET /api/model``: what the loaded model takes and gives."""

    task: Literal["detection"] = "detection"
    class_names: List[str] = Field(description="index = category_id")
    masks: bool = Field(description="the model predicts instance masks (Mask R-CNN)")
    ellipses: bool = Field(description="REFLACX-trained model with masks: draw findings as the ellipses "
                                       "inscribed in their boxes")
    score_threshold: float = Field(description="default of the page's score slider, 0..1")
    min_score: float = Field(description="the lowest score /api/predict returns (the model's test threshold)")
    clinical_features: List[ClinicalFeature] = Field(description="empty for image-only models")


class ImageSize(BaseModel):
    """Size of the uploaded image in pixels (DICOM: Columns x Rows)."""

    width: int
    height: int


class Detection(BaseModel):
    """One finding."""

    bbox: List[float] = Field(min_length=4, max_length=4,
                              description="[x0, y0, x1, y1] in the uploaded image's pixels")
    category: str
    category_id: int = Field(description="index into ModelInfo.class_names")
    score: float = Field(description="0..1")


class ClinicalValue(BaseModel):
    """One clinical feature as the model used it."""

    raw: Union[float, str, None] = Field(description="as given in the form (or read from the DICOM header); "
                                                     "null when not given")
    value: Union[float, str, None] = Field(description="after cleaning (units converted); null = missing, "
                                                       "imputed (numbers: training mean; categories: unknown)")
    status: ClinicalStatus = Field(description="ok | missing | not_a_number | out_of_range (set missing) | "
                                               "unknown_category (not in the training vocabulary) | converted "
                                               "(e.g. Celsius to Fahrenheit, '8-9' to 8.5)")


class Prediction(BaseModel):
    """``POST /api/predict``: the findings on one image."""

    image: ImageSize
    detections: List[Detection] = Field(description="score >= score_threshold, best first")
    image_scores: Dict[str, float] = Field(description="per class: the highest box score (>= min_score; 0 without "
                                                       "a box), independent of score_threshold")
    clinical_used: Dict[str, ClinicalValue] = Field(default_factory=dict,
                                                    description="per clinical feature; empty for image-only models")
    warnings: List[str] = Field(default_factory=list,
                                description="unknown form fields, imputed or cleaned values, image-reading notes")
    preview: Optional[str] = Field(default=None, description="only when the request asked for it (preview=true): "
                                   "the image as the model read it, a PNG data URL, long side <= 1024")


class ErrorResponse(BaseModel):
    """Every error: a message naming the problem (the file, the field, the limit)."""

    detail: str
