"""What each command does once its options are read: one function per command (`cmd_predict(args)`), each calling
the job it runs (jobs are callable without the CLI) and printing its one summary line. The options themselves
are declared in posecal/cli/parser.py; posecal/cli/main.py turns a user's mistake into one line and exit 2."""
from __future__ import annotations

import sys
from dataclasses import replace

from posecal.errors import PosecalInputError
from posecal.inference.person_policy import VIDEO
from posecal.parallel import default_threads


def cmd_train(args) -> None:
    from posecal.training.config import load_train_config
    from posecal.training.train import train

    cfg = load_train_config(args.config)
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.packed:
        cfg.data.packed = args.packed
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes if args.max_minutes > 0 else None
    result = train(cfg, resume=args.resume, progress=not args.no_progress)
    if result["rank"]:                   # torchrun: rank 0 speaks for all
        return
    if result["stopped"]:
        why = f"after {cfg.max_minutes:g} minutes" if result["stopped_by"] == "max_minutes" else f"by {result['stopped_by']}"
        print(f"stopped {why} at epoch {result['epoch']}, step {result['step']}; "
              f"go on with --resume. Best val AP so far {result['best_ap']:.2f}; files in {cfg.out_dir}")
    else:
        print(f"best val AP {result['best_ap']:.2f}; files in {cfg.out_dir}")


def cmd_train_trust(args) -> None:
    from posecal.training.config import load_trust_config
    from posecal.training.trust_job import run_trust_job

    cfg = load_trust_config(args.config)
    cfg.out_dir, cfg.output = args.out_dir or cfg.out_dir, args.output or cfg.output
    if args.max_minutes is not None:
        cfg.train.max_minutes = args.max_minutes
    result = run_trust_job(cfg, progress=not args.no_progress, log=lambda line: print(line, flush=True))
    if result["stopped"]:
        print(f"stopped after {cfg.train.max_minutes:g} minutes at step {result['step']} of {result['total']}; run "
              f"it again to go on (files in {cfg.out_dir})")
    else:
        print(f"wrote {result['output']} (uncalibrated: posecal pack {result['output']} PACKED.pt --calibrate-on "
              f"VAL.json --images DIR --conditions)")


def cmd_import_weights(args) -> None:
    from posecal.models.official.import_weights import import_weights

    cfg = import_weights(args.src, args.arch, args.out, input_wh=args.input_wh, input_channels=args.input_channels)
    print(f"{args.out}: {cfg.backbone}, {cfg.num_keypoints} keypoints, input {cfg.input_wh[0]}x{cfg.input_wh[1]} "
          f"{cfg.input_channels.upper()}")


def cmd_eval(args) -> None:
    from posecal.io import finished_or_removed
    from posecal.viz.report import PLOTS

    # Ctrl-C before report.html is written leaves no metrics.json that looks like a finished evaluation
    with finished_or_removed(args.out, ("results.json", "metrics.json", "report.html", *(n for n, _ in PLOTS)),
                             "eval"):
        _run_eval(args)


def _run_eval(args) -> None:
    from posecal.evaluation.evaluate import EvalConfig, evaluate
    from posecal.viz.report import draw_evaluation

    if args.detector:
        _eval_predicted(args)
        return
    engine = _posing_engine(args, "eval")
    if args.results:
        from posecal.evaluation.results import evaluate_results

        ev = evaluate_results(args.results, args.annotations, args.out, images=args.images,
                              skip_invalid=args.skip_invalid)
        draw_evaluation(ev)
        m = ev.metrics
        name = "pose_quality" if "pose_quality" in m["ap"] else "score"
        floor = m.get("pose_score_ece_floor", {}).get(name)
        print(f"{m['num_results']} results, {m['num_matched']} matched to GT persons; by '{name}': AP "
              f"{m['ap'][name]:.1f}, pose-score ECE {m.get('pose_score_ece', {}).get(name)}"
              + (f" (floor {floor[0]}, p90 {floor[1]})" if floor else "") + f", keypoint ECE "
              f"{m.get('keypoint_ece')} (floors {m.get('keypoint_ece_floor')}) -> {args.out}/metrics.json")
        return
    if not args.images:
        raise PosecalInputError("--images is needed to run a model (or give --results to evaluate a results file)")
    ev = evaluate(EvalConfig(annotations=args.annotations, images=args.images, out=args.out, model=args.model,
                            boxes=args.boxes, flip=args.flip, decode=args.decode,
                            batch_size=args.batch_size, threads=_threads(args), progress=not args.no_progress,
                            score_mode=args.score_mode, drop_unlabelled=args.drop_unlabelled,
                            calibrated=not args.no_calibration, orientations=args.orientations,
                            skip_invalid=args.skip_invalid, backend=args.backend, device=args.device,
                            precision=args.precision, engine=engine))
    draw_evaluation(ev)
    m = ev.metrics
    mode = m["score_mode"]
    print(f"{m['num_instances']} persons in {m['seconds']:.1f}s, pose score '{mode}': AP {m['ap'][mode]:.1f}, "
          f"AP50 {m['ap50'][mode]:.1f}, AP75 {m['ap75'][mode]:.1f}, AR {m['ar'][mode]:.1f} "
          f"-> {args.out}/metrics.json")


def _eval_predicted(args) -> None:
    """`eval --detector`: what `predict` reports on the annotated images, scored (predict/scored.py)."""
    from posecal.predict.job import PredictConfig
    from posecal.predict.units import run_predict
    from posecal.predict.scored import evaluate_predicted
    from posecal.viz.report import draw_evaluation

    for given, option in ((args.results, "--results"), (args.boxes, "--boxes")):
        if given:
            raise PosecalInputError(f"--detector poses what a detector finds; {option} gives the poses or boxes: "
                                    "use one of them")
    if not args.images:
        raise PosecalInputError("--images is needed to pose the annotated pictures with --detector")
    cfg = PredictConfig(inputs=[], model=args.model, detector=args.detector, flip=args.flip,
                        orientations=args.orientations, backend=args.backend, device=args.device,
                        precision=args.precision, threads=_threads(args), progress=not args.no_progress)
    ev = evaluate_predicted(cfg, args.annotations, args.images, args.out, args.skip_invalid,
                            _engine(args, run_predict))
    draw_evaluation(ev)
    m = ev.metrics
    name = "pose_quality" if "pose_quality" in m["ap"] else "score"
    print(f"{m['num_results']} poses reported on {args.annotations}'s images: AP {m['ap'][name]:.1f} (by {name}); "
          f"one to one: {one_to_one_summary(m.get('one_to_one') or {})} -> {args.out}/metrics.json")


def one_to_one_summary(e: dict) -> str:
    """metrics.json's one_to_one figures in words, shares as percentages: 'found 66.7 % of the 3 labelled people
    with a right pose, pose-quality ECE 0.05 (floor 0.02, p90 0.04), 0.0 % of the 22 poses with Q >= 0.7 wrong'."""
    from posecal.evaluation.one_to_one import CONFIDENT

    def share(v) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    floor = e.get("ece_floor") or [None, None]
    confident = e.get("confident") or 0
    wrong = (f"{share(e.get('confident_wrong_share'))} of the {confident} poses with Q >= {CONFIDENT} wrong"
             if confident else f"no pose with Q >= {CONFIDENT}")
    return (f"found {share(e.get('found_right'))} of the {e.get('people_labelled', 0)} labelled people with a right "
            f"pose, pose-quality ECE {e.get('ece')} (floor {floor[0]}, p90 {floor[1]}), {wrong}")


def _threads(args) -> int | None:
    """--threads, else the cores this process may use; with --engine ray None (each worker's share of the cores
    Ray sees, posecal/parallel/ray_rows.py)."""
    if args.threads is not None or getattr(args, "engine", None) == "ray":
        return args.threads
    return default_threads()


def _ray_config(args):
    """--engine ray's RayConfig (--address, --workers), or None for --engine process, where --address and
    --workers are refused."""
    if args.engine != "ray":
        if args.address or args.workers:
            raise PosecalInputError("--address and --workers are --engine ray's options")
        return None
    from posecal.parallel.ray_rows import RayConfig

    return RayConfig(args.address, args.workers)


def _engine(args, run):
    """`run` (predict's or track's) on the engine --engine names: this process (engine None), or Ray's with --address
    and --workers; each goes through the runner by whole files (predict/units.py, tracking/units.py)."""
    from functools import partial

    config = _ray_config(args)   # engine process: None, --address and --workers refused
    return run if config is None else partial(run, engine=config)


def _posing_engine(args, command: str):
    """eval's and audit's --engine: the runner's engine their posing runs on (inference/record_posing.py), this
    process (OneProcess: a part per picture beside the output, so a stopped run resumes) or Ray's; refused with
    --results, which poses nothing (None)."""
    if args.engine == "ray" and args.results:
        raise PosecalInputError(f"--engine ray poses persons with a model; posecal {command} --results reads a "
                                "results file in this process: leave out --engine ray")
    if args.engine != "ray":
        _ray_config(args)   # --address and --workers refused
        from posecal.parallel.runner import OneProcess

        return None if args.results else OneProcess()
    from posecal.parallel.ray_rows import import_ray

    import_ray()   # without Ray: one line before any input is read or model opened
    return _ray_config(args)


def cmd_pack(args) -> None:
    from posecal.evaluation.pack_job import PackConfig, run_pack

    out = run_pack(PackConfig(model=args.model, out=args.out, fp32=args.fp32, calibrate_on=args.calibrate_on,
                              images=args.images, conditions=args.conditions,
                              reported_quality=args.reported_quality, threads=_threads(args),
                              progress=not args.no_progress))
    print(f"wrote {out}")


def cmd_predict(args) -> None:
    from posecal.predict.job import PredictConfig
    from posecal.predict.units import run_predict
    from posecal.records import STDOUT, stdout_reserved

    run = _engine(args, run_predict)   # ray: Ray Data actors, shards, one merged results file
    with stdout_reserved(args.out):   # --out -: stdout carries the records only; this line goes to stderr
        s = run(PredictConfig(
            inputs=args.inputs, out=args.out, model=args.model, boxes=args.boxes, annotations=args.annotations,
            detector=args.detector, detector_threshold=args.detector_threshold, verifier=args.verifier, nms=args.nms,
            min_pose_quality=args.min_pose_quality, nms_threshold=args.nms_threshold, score_mode=args.score_mode,
            render=args.render, show_all=args.show_all, radius=args.radius, every=args.every,
            max_frames=args.max_frames, batch_size=args.batch_size, device=args.device, precision=args.precision,
            backend=args.backend, flip=args.flip, threads=_threads(args),
            progress=not args.no_progress and args.out != STDOUT, orientations=args.orientations))
        skipped = f"; {s.problems} problem(s) reported above" if s.problems else ""
        print(f"{s.persons} person(s) in {s.frames} image(s)/frame(s) in {s.seconds:.1f}s -> {args.out}"
              + (f", overlays in {args.render}/" if args.render else "") + skipped
              + f" (settings fingerprint {s.fingerprint})")


def cmd_run_peer(args) -> None:
    from posecal.evaluation.movenet_peer import run_movenet

    s = run_movenet(args.model, args.annotations, args.images, args.out, threads=_threads(args),
                    progress=not args.no_progress)
    print(f"{args.peer}: {s['persons']} person(s) in {s['seconds']:.1f}s"
          + (f", {s['failed']} skipped" if s["failed"] else "") + f" -> {args.out}")


def cmd_calibrate(args) -> None:
    from posecal.evaluation.calibrate_results import calibrate_apply, calibrate_fit

    if args.action == "fit":
        cal = calibrate_fit(args.results, args.annotations, args.out, images=args.images)
        print(f"fitted on {cal.meta['fit_persons']} persons ({cal.meta['fit_labelled_keypoints']} labelled "
              f"keypoints; inputs: {', '.join(cal.meta['inputs'])}) -> {args.out}")
    else:
        n = calibrate_apply(args.calibrator, args.results, args.out, images=args.images,
                            annotations=args.annotations)
        print(f"{n} results with keypoint_quality, pose_quality, visibility, keypoint_radius -> {args.out}")


def cmd_audit(args) -> None:
    if args.action == "apply":
        from posecal.audit.fixes import audit_apply

        counts = audit_apply(args.annotations, args.findings, args.accept, args.out)
        print(f"applied {sum(n for k, n in counts.items() if k != 'person')} finding(s) ("
              + ", ".join(f"{k} {n}" for k, n in counts.items() if n) + ") -> " + str(args.out)
              + (" (person findings are flags: nothing changed for them)" if counts["person"] else ""))
        return
    from posecal.audit.job import FINDINGS, AuditConfig, audit
    from posecal.io import finished_or_removed

    for option in ("annotations", "out"):
        if getattr(args, option) is None:
            raise PosecalInputError(f"posecal audit needs --{option}")
    engine = _posing_engine(args, "audit")
    # Ctrl-C before report.html is written leaves no findings.json that looks like a finished audit
    with finished_or_removed(args.out, (FINDINGS, "report.html"), "audit"):
        s = audit(AuditConfig(annotations=args.annotations, out=args.out, images=args.images, model=args.model,
                              boxes=args.boxes, results=args.results, flip=args.flip,
                              batch_size=args.batch_size, threads=_threads(args), progress=not args.no_progress,
                              report_top=args.top, device=args.device, precision=args.precision, engine=engine,
                              fiftyone=args.fiftyone))
    print(f"{s['persons']} persons audited in {s['seconds']:.1f}s: {s['findings']} findings ("
          + ", ".join(f"{k} {n}" for k, n in s["per_kind"].items()) + f") -> {args.out}/findings.json, "
          f"{args.out}/report.html" + (f", FiftyOne folder {args.fiftyone}" if args.fiftyone else ""))


def cmd_models(args) -> None:
    import json

    from posecal.models.shipped import shipped_model_table

    rows = shipped_model_table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        graphs = f"{row['file']} ({row['bytes'] / 1e6:.1f} MB; its {row['precision']} graphs run on this CPU)" \
            if row["bytes"] is not None else \
            "no ONNX graphs" if row["torch_file"] else "not in this installation (posecal's source tree has it)"
        default = " (default)" if row["default"] else ""
        torch_file = "" if row["torch_file"] is None else f"; PyTorch file {row['torch_file']}"
        print(f"{row['name']}{default}: {row['use']}\n    {graphs}{torch_file}")
    print("any command's --model (and Predictor's model_path) also takes a model file or an exported .onnx")
    from posecal.devices import choose_precision
    chosen, why = choose_precision("auto")
    print(f"on this CPU the shipped models run their {chosen} graphs by default ({why}); --precision int8|float "
          "chooses")
    if args.time:
        from posecal.inference.crop_cost import ms_per_crop
        from posecal.models.shipped import SHIPPED_GRAPHS
        from posecal.parallel import default_threads

        threads = args.threads or default_threads()
        print(f"measured on this CPU ({threads} thread(s), {chosen} graphs), ms per person crop:")
        for name in SHIPPED_GRAPHS:
            flip, plain = (ms_per_crop(name, f, threads) for f in (True, False))
            print(f"    {name}: {flip:.1f} with the flip test (predict, eval), {plain:.1f} without (track)")
    else:
        print("`posecal models --time` measures what each costs per person on this CPU")


def cmd_demo(args) -> None:
    from posecal.predict.demo import run_demo

    run_demo(args.out, model=args.model)


def cmd_track(args) -> None:
    from posecal.data.live import LiveConfig
    from posecal.records import STDOUT, stdout_reserved
    from posecal.tracking.job import TrackConfig, render_is_file
    from posecal.tracking.units import run_track
    from posecal.tracking.tracker import TrackerConfig

    run = _engine(args, run_track)   # ray: one video per Ray actor call, one merged results file
    with stdout_reserved(args.out):   # --out -: stdout carries the records only; these lines go to stderr
        s = run(TrackConfig(
            videos=args.videos, out=args.out, render=args.render, model=args.model, detector=args.detector,
            detector_threshold=args.detector_threshold, verifier=args.verifier, detect_every=args.detect_every,
            adaptive=args.adaptive, second_look=args.second_look, between=args.between,
            repose_after=args.repose_after, min_pose_quality=args.min_pose_quality,
            missed_detections=args.missed_detections, drop_parts=not args.keep_parts, backend=args.backend,
            device=args.device, precision=args.precision, flip=args.flip, threads=_threads(args),
            progress=not args.no_progress and args.out != STDOUT, max_frames=args.max_frames, duration=args.duration,
            tracker=TrackerConfig(max_misses=args.max_misses, smooth=not args.no_smooth), show=args.show,
            policy=replace(VIDEO, birth_quality=args.min_birth_quality), rerun=args.rerun,
            live=LiveConfig(reconnects=args.reconnect, stall_seconds=args.stall, realtime=not args.no_drop)))
        video = "" if not args.render else (f", overlay video {args.render}" if render_is_file(args.render)
                                            else f", overlay videos in {args.render}/")
        video += f", rerun recording {args.rerun}" if args.rerun and s.frames else ""
        live = (f"; live: {s.frames} of {s.captured} arrived frame(s) processed "
                f"({s.frames / max(s.captured, 1):.0%}), {s.dropped} dropped" if s.captured else "")
        print(f"{s.tracks} track(s), {s.results} tracked pose(s) in {s.frames} frame(s) in {s.seconds:.1f}s "
              f"({s.frames / max(s.seconds, 1e-9):.1f} fps) -> {args.out}{video}{live} (settings fingerprint "
              f"{s.fingerprint})")
        if args.timing and s.frames:
            print("busy ms per frame (stages overlap): " + ", ".join(f"{stage} {1000 * sec / s.frames:.1f}"
                                                                      for stage, sec in s.stages.items()))
    if s.stopped == "interrupted (Ctrl-C)":   # main() says it in one line and exits 130
        raise KeyboardInterrupt(f"interrupted (Ctrl-C): kept the results of the {s.frames} frame(s) tracked "
                                f"-> {args.out}")
    if s.stopped:
        print(f"posecal: stopped by {s.stopped} after {s.frames} frame(s)", file=sys.stderr)


def cmd_export(args) -> None:
    import torch

    from posecal.models.checkpoint import load_model
    from posecal.export.onnx import export_onnx
    from posecal.io import check_output_file

    check_output_file(args.out, "--out")  # before loading the model; export_onnx checks again for API callers
    if bool(args.int8) != bool(args.images):
        raise PosecalInputError("--int8 and --images go together (a labelled COCO file and its images)")
    model, cfg, meta = load_model(args.model)
    w, h = cfg.input_wh
    check = torch.rand(4, 3, h, w, generator=torch.Generator().manual_seed(0)) * 4 - 2
    crops = None
    if args.int8:
        from posecal.export.quantize import calibration_crops

        crops = calibration_crops(args.int8, args.images, cfg.input_wh, args.int8_crops)
        check = torch.from_numpy(crops[:4])   # int8 vs fp32 on real crops: random inputs would say nothing
    from posecal.export.cache import cached_onnx_bytes

    exported = cached_onnx_bytes(args.model, args.flip)   # the cache's export when it has one (predict made it)
    diffs = export_onnx(model, cfg, args.out, check_inputs=check, flip_test=args.flip,
                        calibration=meta.get("calibration"), int8_crops=crops, exported=exported,
                        reported=meta.get("reported_quality"))
    worst = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    flip = "with" if args.flip else "without"
    kind = f"int8, ranges from {len(crops)} crops, " if crops is not None else ""
    print(f"wrote {args.out} ({kind}dynamic batch, {flip} flip test); onnxruntime vs PyTorch max abs difference: "
          f"{worst}")
