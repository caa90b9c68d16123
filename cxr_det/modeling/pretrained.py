"""Pretrained weights that cannot be downloaded: an error that says how to work offline.

Two downloads can happen: ``MODEL.WEIGHTS`` when it is a URL (``detectron2://...``,
``https://...``; fetched by the checkpointer) and torchvision's ImageNet weights for
MobileNetV3 with ``CXR.MOBILENET.PRETRAINED True`` (fetched when the backbone is built).
Offline both fail with a bare ``URLError``; :func:`explain_download_error` turns that into
an error naming the file and the config keys that avoid the download.
"""
import os
from typing import List, Optional
from urllib.parse import urlparse

import torch

from detectron2.utils.file_io import Detectron2Handler

__all__ = ["explain_download_error", "is_remote", "offline_fixes"]

MOBILENET_KEY = "CXR.MOBILENET.PRETRAINED"
WEIGHTS_KEY = "MODEL.WEIGHTS"


def is_remote(path: str) -> bool:
    """Whether ``path`` (e.g. ``MODEL.WEIGHTS``) is fetched over the network (a URL other than ``file://``)."""
    scheme = urlparse(str(path)).scheme
    return "://" in str(path) and scheme not in ("", "file")


def _http_url(url: str) -> str:
    """``detectron2://X`` as the https address it is downloaded from; other URLs unchanged."""
    if url.startswith(Detectron2Handler.PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + url[len(Detectron2Handler.PREFIX):]
    return url


def _uses_pretrained_mobilenet(cfg) -> bool:
    return "mobilenet" in cfg.MODEL.BACKBONE.NAME and bool(cfg.CXR.MOBILENET.PRETRAINED)


def offline_fixes(cfg, failed_key: str = WEIGHTS_KEY, url: Optional[str] = None) -> List[str]:
    """The ways to do without the download of ``failed_key``, then those for any other
    download ``cfg`` would make, one sentence each."""
    fixes = []
    weights = cfg.MODEL.WEIGHTS
    if failed_key == MOBILENET_KEY:
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        where = os.path.join(cache, os.path.basename(urlparse(url).path)) if url else cache
        fixes += [
            f"copy torchvision's file{f' {url}' if url else ''} to {where}",
            f"or train the backbone from scratch: {MOBILENET_KEY} False",
        ]
        if is_remote(weights):
            fixes.append(f'and {WEIGHTS_KEY} {weights} is a download too: a local path, or {WEIGHTS_KEY} ""')
        return fixes
    source = url or weights
    name = os.path.basename(urlparse(source).path) or "weights.pkl"
    fixes += [
        f"download {_http_url(source)} on a machine with network access and set {WEIGHTS_KEY} /path/to/{name}",
        f'or train from scratch: {WEIGHTS_KEY} "" (a ResNet backbone then switches to GroupNorm, '
        "see cxr_det/modeling/scratch.py)",
    ]
    if _uses_pretrained_mobilenet(cfg):
        fixes.append(f"and {MOBILENET_KEY} True downloads torchvision's weights too: {MOBILENET_KEY} False")
    return fixes


def explain_download_error(exc: BaseException, cfg, failed_key: str = WEIGHTS_KEY, url: Optional[str] = None) -> RuntimeError:
    """A RuntimeError for a failed download of pretrained weights, naming the fix; raise it ``from exc``.

    Args:
        exc: the error of the download (``URLError``, ``OSError``, ...).
        cfg: the config whose weights were being fetched.
        failed_key: the config key that asked for the download: ``"MODEL.WEIGHTS"`` (the
            checkpointer) or ``"CXR.MOBILENET.PRETRAINED"`` (the MobileNetV3 backbone).
        url: the address fetched (default ``MODEL.WEIGHTS``).
    """
    if failed_key not in (WEIGHTS_KEY, MOBILENET_KEY):
        raise ValueError(f"failed_key must be {WEIGHTS_KEY!r} or {MOBILENET_KEY!r}, got {failed_key!r}")
    url = url or (cfg.MODEL.WEIGHTS if failed_key == WEIGHTS_KEY else None)
    what = "ImageNet weights of MobileNetV3" if failed_key == MOBILENET_KEY else "the weights"
    fixes = "; ".join(offline_fixes(cfg, failed_key, url))
    return RuntimeError(
        f"Could not download {what} that {failed_key} asks for ({url}): {type(exc).__name__}: {exc}. "
        f"Without network access: {fixes}."
    )
