"""Config keys of training control, under ``cfg.CXR.TRAIN`` (see :func:`add_training_control_config`)."""
from detectron2.config import CfgNode as CN

__all__ = ["add_training_control_config"]


def add_training_control_config(cfg):
    """Add ``cfg.CXR.TRAIN`` (called from ``add_cxr_config``); returns ``cfg``."""
    if "CXR" not in cfg:
        cfg.CXR = CN()
    _C = cfg.CXR
    _C.TRAIN = CN()
    # Every TEST.EVAL_PERIOD iterations and after the last one, compute the training losses on
    # DATASETS.TEST[0] (no augmentation, no gradients, BatchNorm statistics frozen) and log them
    # as val_total_loss, val_loss_cls, ... beside the training losses (metrics.json, TensorBoard).
    _C.TRAIN.VAL_LOSS = True
    # Evaluation metric, as EvalHook logs it ("bbox/AP50", "froc/CPM", "vinbigdata/mAP40"; with
    # several DATASETS.TEST prefixed by the dataset name), that picks OUTPUT_DIR/model_best.pth
    # and drives early stopping and the plateau schedule. "" turns all three off.
    _C.TRAIN.BEST_METRIC = "bbox/AP50"
    # "max" if a larger BEST_METRIC is better (AP, CPM), "min" if smaller is (a loss).
    _C.TRAIN.BEST_MODE = "max"
    # An evaluation improves on the best so far only if it beats it by more than this
    # (absolute, in BEST_METRIC's unit); used by early stopping and the plateau schedule.
    _C.TRAIN.MIN_DELTA = 0.0
    # Early stopping: end training once BEST_METRIC has not improved for this many evaluations
    # in a row (the final evaluation and model_final.pth are still done); 0 = off.
    _C.TRAIN.PATIENCE = 0

    _C.TRAIN.PLATEAU = CN()
    # Multiply the learning rate by FACTOR once BEST_METRIC has not improved for PATIENCE
    # evaluations in a row (torch's ReduceLROnPlateau). It scales SOLVER's schedule (warmup,
    # SOLVER.STEPS) rather than replacing it: leave SOLVER.STEPS empty for a plateau-only schedule.
    _C.TRAIN.PLATEAU.ENABLED = False
    # Factor applied to the learning rate at each plateau (< 1).
    _C.TRAIN.PLATEAU.FACTOR = 0.1
    # Evaluations without improvement that make a plateau (at least 1); counting restarts after each reduction.
    _C.TRAIN.PLATEAU.PATIENCE = 2
    # The learning rate is never reduced below this.
    _C.TRAIN.PLATEAU.MIN_LR = 0.0

    # At the end of training draw OUTPUT_DIR/metrics.json as training_losses.png (training and
    # validation losses), training_metrics.png (evaluation metrics) and training_lr.png.
    _C.TRAIN.PLOT_CURVES = True
    return cfg
