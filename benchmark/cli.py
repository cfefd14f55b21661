"""Command line: ``benchmark list``, ``run``, ``report``, ``compare``, ``predict``, ``evaluate``, ``refit``,
``export`` and ``card``."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from benchmark import UsageError, __version__
from benchmark.config import SAVE_MODELS, TRACK_MODELS, RunConfig, default_data_dir, defaults
from benchmark.console import Console, error_paragraph
from benchmark.data.splits import GROUP_PRESETS
from benchmark.errors import counted
from benchmark.evaluation.metrics import ALL_METRICS
from benchmark.store import RunFolder
from benchmark.training import AUGMENTATIONS, BACKENDS, STRATEGIES

DEFAULTS = SimpleNamespace(**defaults())  # each flag's default, from the settings' groups


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, unless there is none to show or the help already says it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark", description="Cross-validation benchmark of CNN image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list the registered architectures")
    ls.add_argument("pattern", nargs="?", default="all", help="names, patterns or tag:NAME (as --archs); default all")
    ls.add_argument(
        "--arch-module",
        dest="arch_modules",
        action="append",
        default=[],
        metavar="FILE",
        help="also load architectures from FILE",
    )
    ls.add_argument("--image-size", type=int, default=DEFAULTS.image_size, help="input size for parameters and FLOPs")
    ls.add_argument(
        "--keras", action="store_true", help="list Keras's applications (keras:NAME in --archs); PATTERN on their names"
    )

    rep = sub.add_parser("report", help="rebuild report.md and report.html of a run folder (no training)")
    rep.add_argument("run_dir", type=Path, help="a run folder written by `benchmark run`")
    rep.add_argument("--open", action="store_true", help="open the HTML report in a browser")

    cmp = sub.add_parser("compare", help="compare run folders: settings, the ranking metric, paired tests")
    cmp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="two or more run folders")
    cmp.add_argument("--out", type=Path, help="where compare.html is written (default: reports/compare-<runs>)")

    pr = sub.add_parser("predict", help="the chosen architecture's fold ensemble on new images")
    _run_folder(pr)
    pr.add_argument("images", type=Path, nargs="+", metavar="IMAGES", help="image files or folders (recursively)")
    _architecture(pr)
    pr.add_argument(
        "--threshold",
        default="youden",
        metavar="f1|youden|0.5|X",
        help="two classes: the positive class from this threshold, chosen on the out-of-fold predictions (f1: "
        "highest F1; youden: highest sensitivity + specificity, independent of the share of positives) or given "
        "(default: youden); more classes: the most probable",
    )
    _model(pr)
    pr.add_argument("--out", type=Path, help="write the predictions to this CSV file (default: print them)")
    pr.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    pr.add_argument("--gradcam", type=Path, metavar="DIR", help="write a Grad-CAM heat map per image into DIR")

    ev = sub.add_parser("evaluate", help="external validation: every architecture on another labelled folder")
    _run_folder(ev)
    ev.add_argument("data_dir", type=Path, metavar="DIR", help="class folders named as the run's classes (or a "
                    "Kaggle layout: its test/ split), none of them images the run trained on")  # fmt: skip
    ev.add_argument("--name", help="the site's name in the run folder and the report (default: DIR's name)")

    rf = sub.add_parser("refit", help="train the chosen architecture once more on all training images")
    _run_folder(rf)
    _architecture(rf)

    ex = sub.add_parser("export", help="the chosen architecture's fold ensemble (or refit) as one deployable model")
    _run_folder(ex)
    _architecture(ex)
    _model(ex)
    ex.add_argument("--format", dest="fmt", default="keras", choices=("keras", "onnx", "savedmodel"))
    ex.add_argument("--out", type=Path, help="the folder for the model and model.json (default: RUN/export/ARCH)")
    ex.add_argument("--overwrite", action="store_true", help="replace an earlier export there")

    cd = sub.add_parser("card", help="the model card of the chosen architecture (markdown)")
    _run_folder(cd)
    _architecture(cd)
    _model(cd)
    cd.add_argument("--out", type=Path, help="write it to this file (default: print it)")

    r = sub.add_parser("run", help="cross-validate architectures and rank them", formatter_class=DefaultsHelp)
    d = DEFAULTS
    g = r.add_argument_group("data")
    g.add_argument(
        "--data",
        type=Path,
        help="Kaggle-layout folder (train/<class>/, optional val/, test/); "
        "default: $BENCHMARK_DATA, then 'data =' under [tool:benchmark] in ./setup.cfg",
    )
    g.add_argument("--positive", help="the positive class (default PNEUMONIA if present, else the second class)")
    g.add_argument(
        "--label-from",
        metavar="REGEX",
        help="classes from file names: the first capture group where it matches, else the folder "
        "(e.g. '_(bacteria|virus)_' for NORMAL / bacteria / virus)",
    )
    g.add_argument("--image-size", type=int, default=d.image_size, help="images are resized to SIZE×SIZE")
    g.add_argument("--channels", type=int, default=d.channels, choices=(1, 3))
    g.add_argument("--cache-dir", type=Path, help="decoded-image cache (default: the user cache folder)")
    g.add_argument("--strict", action="store_true", help="an unreadable image is an error, not a skip")
    g = r.add_argument_group("cross-validation")
    g.add_argument(
        "--archs", default=d.archs, help="all, names, shell patterns (pyramid_*) or tag:NAME, comma-separated"
    )
    g.add_argument(
        "--arch-module",
        dest="arch_modules",
        action="append",
        default=[],
        metavar="FILE",
        help="load architectures from FILE too",
    )
    g.add_argument("--folds", type=int, default=d.folds, help="k of the stratified k-fold cross-validation")
    g.add_argument("--repeats", type=int, default=d.repeats, help="repeated CV: the k folds drawn this many times")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument(
        "--groups",
        metavar="REGEX",
        help="grouped folds: images whose file names give the same first capture group never straddle fit and "
        f"score (presets: {', '.join(GROUP_PRESETS)})",
    )
    g.add_argument("--groups-file", type=Path, metavar="CSV", help="grouped folds from a CSV with columns path, group")
    g.add_argument(
        "--ungrouped",
        default=d.ungrouped,
        choices=("error", "own"),
        help="a file that --groups does not match: an error, or a group of its own",
    )
    g.add_argument(
        "--val-fraction", type=float, default=d.val_fraction, help="inner validation split for early stopping"
    )
    g = r.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs per fold")
    g.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="initial Adam learning rate")
    g.add_argument(
        "--lr-decay-epochs", type=float, default=d.lr_decay_epochs, help="lr falls 10× every this many epochs"
    )
    g.add_argument(
        "--augment", default=d.augment, choices=AUGMENTATIONS, help="training augmentation: none, light or strong"
    )
    g.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const="none",
        default=argparse.SUPPRESS,
        help="= --augment none",
    )
    g.add_argument(
        "--label-smoothing", type=float, default=d.label_smoothing, metavar="EPS", help="targets ε/2 and 1 − ε/2"
    )
    g.add_argument(
        "--weights",
        default=d.weights,
        metavar="none|imagenet|DIR",
        help="pretrained weights of keras: applications: none (from scratch), imagenet (Keras's cache) or a folder "
        "holding Keras's weight files (offline); builders that take `weights` get it too",
    )
    g.add_argument(
        "--warmup-epochs",
        type=int,
        default=d.warmup_epochs,
        metavar="N",
        help="pretrained weights only: the first N of --epochs train the output layer alone, then the whole network "
        "is fine-tuned at --lr / 10 with its batch-norm layers frozen",
    )
    g.add_argument("--deterministic", action="store_true", help="deterministic ops (slower)")
    g.add_argument("--mixed-precision", action="store_true", help="float16 compute (for GPUs)")
    g.add_argument("--strategy", default=d.strategy, choices=STRATEGIES, help="multi-GPU data parallelism")
    g = r.add_argument_group("tuning (nested: each outer fold searches on its inner split)")
    g.add_argument(
        "--tune",
        metavar="SPEC",
        help="settings to search in every fold, the same trials for every architecture, each judged by its "
        "inner-validation loss: 'lr=3e-4,1e-3,3e-3 batch_size=32,64' (a grid) or 'lr=log(1e-4,1e-2)' (with --trials)",
    )
    g.add_argument("--trials", type=int, metavar="N", help="a seeded sample of N trials of --tune (Optuna)")
    g = r.add_argument_group("execution")
    g.add_argument("--jobs", type=_jobs, default=d.jobs, metavar="N|auto",
                   help="trainings at once, in worker processes; auto: as many as the cores and memory allow for a "
                   "CPU run of 1,000 images or more, else 1")  # fmt: skip
    g.add_argument("--backend", default=d.backend, choices=BACKENDS, help="where trainings run: here or a Dask cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="the Dask scheduler (with --backend dask)")
    g = r.add_argument_group("output")
    g.add_argument(
        "--out", type=Path, help="run folder; rerun with the same --out to resume (default reports/<timestamp>)"
    )
    g.add_argument(
        "--rank-by", default=d.rank_by, choices=ALL_METRICS, help="default: f1, or f1_macro for more than two classes"
    )
    g.add_argument("--test-top", type=int, metavar="N", help="score only the N best on the held-out test split")
    g.add_argument("--tta", action="store_true", help="held-out scoring also with test-time augmentation (shifts)")
    g.add_argument(
        "--gradcam-archs",
        default=d.gradcam_archs,
        help="Grad-CAM panels on the test split for: winner, none, or names/patterns/tag:NAME",
    )
    g.add_argument(
        "--save-models",
        default=d.save_models,
        choices=SAVE_MODELS,
        help="fold models (model.keras, without optimizer state) kept after the held-out scoring: every fold's, "
        "the best fold's per architecture, or none (then nothing is saved and the test split is not scored)",
    )
    g.add_argument("--no-save-models", dest="save_models", action="store_const", const="none", help=argparse.SUPPRESS)
    g.add_argument("--overwrite", action="store_true", help="start the --out folder afresh")
    g.add_argument(
        "--raise",
        dest="raise_errors",
        action="store_true",
        help="debugging: stop at the first failing fold and show its traceback (else it is saved in error.txt and "
        "the other architectures go on)",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="print only the leaderboard and errors")
    g = r.add_argument_group("tracking")
    g.add_argument("--tensorboard", action="store_true", help="TensorBoard logs in RUN/tensorboard (tensorboardX)")
    g.add_argument(
        "--track", choices=("mlflow",), help="log the run to MLflow: a run per benchmark, architecture, fold"
    )
    g.add_argument("--tracking-uri", metavar="URI", help="MLflow server (default $MLFLOW_TRACKING_URI, else local)")
    g.add_argument(
        "--experiment", metavar="NAME", help="MLflow experiment (default $MLFLOW_EXPERIMENT_NAME, else cnn-benchmark)"
    )
    g.add_argument("--track-optional", action="store_true", help="an unreachable tracking server: warn and go on")
    g.add_argument("--track-models", default=d.track_models, choices=TRACK_MODELS, help="fold models logged to MLflow")
    for command in sub.choices.values():  # every command
        command.add_argument(
            "-v", "--verbose", action="store_true", help="show the backends' start-up messages (else in run.log)"
        )
    return parser


def _jobs(value: str) -> int | str:
    """--jobs: a whole number, else the word as given (``auto``; ExecutionSettings refuses others in words)."""
    return int(value) if value.lstrip("-").isdigit() else value


def _run_folder(command: argparse.ArgumentParser) -> None:
    command.add_argument("run_dir", type=Path, help="a run folder written by `benchmark run`")


def _architecture(command: argparse.ArgumentParser) -> None:
    command.add_argument("--arch", default="winner", help="the architecture (default: winner, the first in rank)")


def _model(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model",
        default="folds",
        choices=("folds", "refit"),
        help="folds: the mean of the saved fold models (default); refit: the model `benchmark refit` trained",
    )


def _list(args) -> int:
    import keras
    from tabulate import tabulate

    import architectures
    from benchmark.training.flops import forward_flops

    architectures.load_files(args.arch_modules)
    # --keras: Keras's applications by their own names (`benchmark list --keras 'EfficientNet*'`)
    pattern = "*" if args.keras and args.pattern == "all" else args.pattern
    expression = architectures.APPLICATION_PREFIX + pattern if args.keras else pattern
    size, rows = args.image_size, []
    for name in architectures.select(expression):
        spec = architectures.get(name)
        try:
            model = spec.build((size, size, 1))
            params, mflops = f"{model.count_params():,}", f"{forward_flops(model) / 1e6:,.1f}"
        except Exception as err:  # show the list even when one model cannot be built at this size
            params, mflops = f"build fails: {str(err).split(';')[0][:60] or type(err).__name__}", ""
        finally:
            keras.backend.clear_session()
        rows.append([name, ", ".join(spec.tags), params, mflops, spec.description])
    headers = ["name", "tags", f"params @{size}px", f"MFLOPs @{size}px", "description"]
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    for problem in architectures.REGISTRY.broken:  # listed above without that file's architectures
        _error(problem)
    return 2 if architectures.REGISTRY.broken else 0


def _report(args) -> int:
    from benchmark.evaluation.results import read
    from benchmark.report.document import write_report
    from benchmark.store.runfolder import RunFolder

    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir}: no such run folder. Give the --out folder of a `benchmark run`.")
    try:
        md, page = write_report(read(RunFolder(args.run_dir)))
    except OSError as err:  # a read-only run folder (an archive, another user's run)
        raise UsageError(
            f"{args.run_dir}: cannot write the report there ({err.strerror or err}: {err.filename}). Make the "
            "folder writable, or copy it and run `benchmark report` on the copy."
        ) from None
    print(f"wrote {md} and {page}")
    if args.open:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return 0


def _compare(args) -> int:
    from benchmark.report.compare import write_compare

    markdown, page = write_compare(args.run_dirs, args.out)
    print(markdown)
    print(f"wrote {page}", file=sys.stderr)
    return 0


def _predict(args) -> int:
    from benchmark.use import predict, write_predictions

    frame, skipped = predict(args.run_dir, args.images, args.arch, args.threshold, args.gradcam,
                             log=lambda m: print(m, file=sys.stderr), model=args.model)  # fmt: skip
    for path, reason in skipped.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if args.out is None:
        print(frame.to_csv(index=False), end="")
    else:
        write_predictions(frame, args.out, args.overwrite)
        print(f"wrote {args.out} ({len(frame)} images)", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    from benchmark.use import evaluate

    site = evaluate(args.run_dir, args.data_dir, args.name, log=lambda m: print(m, file=sys.stderr))
    t = site["transfer"]
    verdict = f"; the ranking transfer: {t['verdict']}" if t else ""
    print(f"site {site['name']}: {sum(site['counts'].values())} images scored by {len(site['models'])} "
          f"architecture(s){verdict}. Report: {RunFolder(args.run_dir).report_html}")  # fmt: skip
    return 0


def _refit(args) -> int:
    from benchmark.use import refit

    record = refit(args.run_dir, args.arch, log=lambda m: print(m, file=sys.stderr))
    if "error" in record:
        _error(f"{record['architecture']}: the refit failed: {record['error']}. The fold models are unchanged.")
        return 1
    versus = record["against_folds"]
    said = (
        f"; on the test split, refit − fold ensemble {versus['metric']} {versus['difference']:+.3f} (95 % interval "
        f"{versus['ci'][0]:+.3f} to {versus['ci'][1]:+.3f}): {versus['better']}"
        if versus
        else ""
    )
    epochs = counted(record["epochs"], "epoch")
    print(f"{record['architecture']}: refitted on {record['n_images']} images for {epochs}{said}. "
          f"Report: {RunFolder(args.run_dir).report_html}")  # fmt: skip
    return 0


def _export(args) -> int:
    from benchmark.use import export

    target = export(args.run_dir, args.arch, args.fmt, args.out, args.overwrite,
                    log=lambda m: print(m, file=sys.stderr), model=args.model)  # fmt: skip
    print(f"wrote {target} and {target.parent / 'model.json'}")
    return 0


def _card(args) -> int:
    from benchmark.report import model_card
    from benchmark.store.files import write_text
    from benchmark.use import choose

    chosen = choose(args.run_dir, args.arch, models=False, model=args.model)
    card = model_card(chosen.results, chosen.name, chosen.model)
    if args.out is None:
        print(card, end="")
    else:
        if args.out.exists():
            raise UsageError(f"--out {args.out}: exists. Give a new file name for the model card.")
        write_text(args.out, card)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _run(args, console: Console, argv: list[str]) -> int:
    from benchmark.runner import run
    from benchmark.tracking.mlflow_tracking import TrackingLost

    out = args.out or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    config = RunConfig.from_args(
        args, data=args.data or default_data_dir(), out=out, arch_modules=tuple(args.arch_modules)
    )
    interrupted = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):  # Ctrl-C, or SIGTERM from a batch scheduler: stop as Ctrl-C does
        received.append(signum)
        interrupted.set()  # checked after every epoch and fold, in case this KeyboardInterrupt is swallowed
        raise KeyboardInterrupt

    def quiet_unraisable(unraisable):  # a KeyboardInterrupt raised inside a finalizer is re-raised by the check
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)

    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    sys.unraisablehook = quiet_unraisable
    try:
        return run(config, interrupted, console=console)
    except OSError as err:  # a full disk, lost permissions: what was written stays valid (atomic writes)
        raise UsageError(
            f"could not write {err.filename or out}: {err.strerror or err}. Finished folds are saved in {out}. "
            f"Free disk space (or fix the permissions) and rerun the same command with --out {out} to resume."
        ) from None
    except TrackingLost as err:
        _error(str(err))
        print(f"  {_resume_command(argv, args.out is None, out)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signum = received[-1] if received else signal.SIGINT
        how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        print(
            f"\n{how}: finished folds are saved in {out}. Resume with the same command and --out {out}:\n"
            f"  {_resume_command(argv, args.out is None, out)}",
            file=sys.stderr,
        )
        return 128 + signum  # 130 after Ctrl-C, 143 after SIGTERM: as if the signal had ended the process
    finally:
        sys.unraisablehook = sys.__unraisablehook__
        for s, handler in previous.items():
            signal.signal(s, handler)


def _resume_command(argv: list[str], add_out: bool, out: Path) -> str:
    """The command that resumes this run, quoted for a shell: the same arguments, without --overwrite
    (it would start afresh), with --out where it was left to its default."""
    kept = [a for a in argv if not (a.startswith("--ov") and "--overwrite".startswith(a))]  # argparse abbreviates
    return shlex.join(["benchmark", *kept, *(["--out", str(out)] if add_out else [])])


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    from architectures import RegistryError

    with Console(verbose=args.verbose) as console:
        try:
            if args.command == "run":
                return _run(args, console, argv)
            commands = {"list": _list, "report": _report, "compare": _compare, "predict": _predict,
                        "evaluate": _evaluate, "refit": _refit, "export": _export, "card": _card}  # fmt: skip
            return commands[args.command](args)
        except (UsageError, RegistryError) as err:
            _error(str(err))
            return 2


def _error(message: str) -> None:
    """One paragraph on standard error."""
    print(error_paragraph(message), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
