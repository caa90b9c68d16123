#!/usr/bin/env python
"""Train and evaluate detectors on chest X-ray datasets with detectron2.

    tools/train_net.py --config-file configs/REFLACX/faster_rcnn_R_50_FPN.yaml
    tools/train_net.py --config-file ... --resume                       # continue an interrupted run
    tools/train_net.py --eval-only --run output/reflacx/faster_rcnn_R_50_FPN [KEY VALUE ...]
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    tools/train_net.py --config-file ... --num-gpus 8                  # 8 processes: GPUs (NCCL), or CPU (gloo)
    tools/train_net.py --config-file ... --num-gpus 4 --num-machines 2 --machine-rank 0 --dist-url tcp://HOST0:PORT

SIGINT (Ctrl-C) or SIGTERM saves a checkpoint after the current iteration and exits with
130 / 143 and the command that resumes.
"""
import sys

from torch.multiprocessing import ProcessExitedException

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)
import cxr_det.modeling  # noqa: F401  (registers backbones and meta-architectures)

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from cxr_det.engine import (
    CheckpointMismatchError,
    CXRCheckpointer,
    DatasetCheckError,
    RunConfigError,
    Trainer,
    TrainingInterrupted,
    argument_parser,
    setup,
)
from cxr_det.engine.launch import launch


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        CXRCheckpointer(model, save_dir=cfg.OUTPUT_DIR).load(cfg.MODEL.WEIGHTS)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    try:
        return trainer.train()
    except TrainingInterrupted as stop:
        sys.exit(stop.exit_code)


def main_or_exit(args):
    """``main`` in each process, its set-up errors as a one-line message and exit status 1."""
    try:
        return main(args)
    except (DatasetCheckError, RunConfigError, CheckpointMismatchError) as e:
        sys.exit(f"train_net.py: {e}")


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    try:
        launch(
            main_or_exit,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            backend=args.dist_backend,
        )
    except ProcessExitedException as e:  # a process exited (its message is above) or was killed
        sys.exit(e.exit_code if e.exit_code > 0 else 128 - e.exit_code)
