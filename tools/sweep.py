#!/usr/bin/env python
"""Grid search over config overrides: one tools/train_net.py run per grid point, here or as a
SLURM job array through submitit, resumed where it stopped, metrics collected in one table.

    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml --dry-run        # the runs and what each would do
    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml                  # here, one run at a time
    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml --parallel 2     # here, two at a time
    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml --executor slurm # a job array (sweep's slurm:)
    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml --executor slurm --no-wait
    tools/sweep.py configs/sweeps/demo_clinical_lr_fusion.yaml --collect-only   # results.csv/.md/.png

The sweep file (YAML) names the base config, fixed overrides, a grid of overrides (runs =
its cartesian product), the metrics to tabulate and the SLURM parameters; see
cxr_det/engine/sweep.py. Every key is checked against the config before any run starts.
Running the same command again skips finished runs, resumes runs that have a checkpoint
(--resume) and restarts the others. Each run's OUTPUT_DIR is <output_dir>/<name>, its
output in sweep_job.log there. After the runs: <output_dir>/results.csv (every metric),
results.md and results.png (the chosen metrics against each grid axis).

Exit status: 0 when every run finished, 1 when one failed or did not finish, 2 for a bad
sweep file.
"""
import argparse
import logging
import sys
from pathlib import Path

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)
from cxr_det.engine.sweep import (
    SweepConfigError,
    collect,
    load_sweep,
    run_local,
    run_state,
    submit,
    submitit_parameters,
    train_command,
    write_results,
)

logger = logging.getLogger("sweep")
TRAIN_NET = Path(__file__).resolve().parent / "train_net.py"
# --executor -> submitit cluster name ("local" here: tools/sweep.py's own processes)
CLUSTERS = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep file (YAML)")
    parser.add_argument("--executor", default="local", choices=["local", *CLUSTERS],
                        help="local: processes of this machine (default); slurm: a submitit job array; "
                             "submitit-local / submitit-debug: submitit's own local / in-process executors (tests)")
    parser.add_argument("--parallel", type=int, default=1, help="--executor local: runs at a time (default 1)")
    parser.add_argument("--output-dir", default=None, help="replaces the sweep file's output_dir")
    parser.add_argument("--dry-run", action="store_true", help="check the sweep file, print the runs, run nothing")
    parser.add_argument("--collect-only", action="store_true", help="run nothing; collect the results")
    parser.add_argument("--no-wait", action="store_true",
                        help="submitit executors: return once the jobs are submitted (collect later with --collect-only)")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="submitit executors: job state polling period")
    parser.add_argument("--train-script", default=str(TRAIN_NET),
                        help="the training script each run calls with train_net's arguments (default tools/train_net.py)")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    if args.parallel > 1 and args.executor != "local":
        parser.error("--parallel is for --executor local; on SLURM set slurm: array_parallelism in the sweep file")
    if args.dry_run and args.collect_only:
        parser.error("--dry-run and --collect-only exclude each other")
    return args


def dry_run(sweep, base_command, executor):
    print(f"sweep {sweep.source}: {len(sweep.runs)} run(s) of {sweep.config} in {sweep.output_dir}")
    for run in sweep.runs:
        state = run_state(run)
        print(f"  {run.name}: {state}")
        if state != "finished":
            print("    " + " ".join(train_command(run, base_command, sweep.config, sweep.num_gpus, state == "resume")))
    if executor != "local":
        print(f"submitit {CLUSTERS[executor]} parameters: {submitit_parameters(sweep.slurm, CLUSTERS[executor], sweep.source)}")
    print(f"metrics: {', '.join(sweep.metrics) or '(none chosen)'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        sweep = load_sweep(args.sweep, output_dir=args.output_dir)
    except SweepConfigError as e:
        print(f"sweep.py: {e}", file=sys.stderr)
        return 2
    base_command = [sys.executable, args.train_script]
    if args.dry_run:
        dry_run(sweep, base_command, args.executor)
        return 0
    if not args.collect_only:
        if args.executor == "local":
            run_local(sweep, base_command, parallel=args.parallel)
        else:
            try:
                outcomes = submit(sweep, base_command, cluster=CLUSTERS[args.executor], wait=not args.no_wait,
                                  poll_seconds=args.poll_seconds)
            except RuntimeError as e:  # submitit: no srun/sbatch on this machine
                print(f"sweep.py: --executor {args.executor}: {e} (here: --executor local)", file=sys.stderr)
                return 2
            if args.no_wait:
                logger.info(f"{len(outcomes)} job(s) submitted; when they are done: {sys.argv[0]} {args.sweep} "
                            "--collect-only (or run this command again: finished runs are skipped)")
                return 0
    frame = collect(sweep)
    paths = write_results(sweep, frame)
    logger.info("results: " + ", ".join(paths.values()))
    done = int((frame["status"] == "finished").sum())
    if done < len(frame):
        logger.warning(f"{len(frame) - done} of {len(frame)} run(s) not finished: "
                       + ", ".join(f"{r.run} ({r.status})" for r in frame.itertuples() if r.status != "finished")
                       + "; run the same command again to resume them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
