"""The ``greybox`` command line.

Commands: ``validate``, ``templates``, ``passes``, ``render``, ``status``, ``inspect``. Heavy
libraries are imported inside the commands, so ``greybox --help`` is instant. Exit codes: 0
success, 1 the job ran and some work failed, 2 bad input (template, option, path), 3 model weights
unavailable, 130 interrupted. A user's mistake is a message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from greybox.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, GreyboxError, InputError

FARM_HELP = ("where tasks run: local (worker processes on this machine, the default); ray (the Ray cluster in RAY_ADDRESS, "
             "else a private Ray on 127.0.0.1); ray://HOST:PORT (join a Ray cluster through its Ray Client server); "
             "HOST:PORT (join by the cluster's GCS address, from a node of that cluster). Token authentication: "
             "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


def _add_job_options(p: argparse.ArgumentParser, render: bool) -> None:
    p.add_argument("templates", metavar="TEMPLATE", nargs="*", help="template .toml path or bundled name (several: one subfolder each)")
    p.add_argument("--out", metavar="DIR", help="output folder (required)")
    p.add_argument("--frames", metavar="RANGES", help="inclusive ranges and lists inside the template's range, e.g. 1-12,20,30-32")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a template value (TOML value; a string when it is not one); repeatable")
    p.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="KEY.PATH=[V1,V2,...]",
                   help="one shot per value (TOML list), each in its own subfolder; repeatable (all combinations)")
    if render:
        p.add_argument("--stylizer", choices=("diffusion", "npr", "baked"), help="default: the template's style.stylizer (baked: from style.look.from, no denoising)")
        p.add_argument("--model", metavar="ID_OR_DIR", help="base model: hub id or local diffusers folder")
        p.add_argument("--controlnet", dest="controlnets", action="append", default=[], metavar="PASS=ID_OR_DIR",
                       help="replace the template's ControlNets (PASS: depth, normal, seg, lines); repeatable")
        p.add_argument("--consistency", choices=("per_frame", "flow_warp", "keyframes"), help="default: the template's style.consistency")
        p.add_argument("--revert", type=int, metavar="N", help="make version N of the job folder (greybox render DIR --revert N) "
                       "the latest again, without recomputing; `greybox inspect DIR` lists the versions")
    p.add_argument("--save-blend", action="store_true", help="also write DIR/scene/scene.blend (as passes.save_blend = true)")
    p.add_argument("--asset-root", dest="asset_roots", action="append", default=[], metavar="DIR",
                   help="a folder the template's model files (and what they refer to) may also come from; repeatable")
    p.add_argument("--force", action="store_true", help="replace a render of different inputs in DIR")
    p.add_argument("--resume", action="store_true", help="continue the interrupted job in DIR: with --out alone, on the inputs it recorded; "
                   "with the whole command, when its inputs match the record")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--farm", default="local", metavar="local|ray|ray://HOST:PORT|HOST:PORT", help=FARM_HELP)
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (local) or CPUs for a private Ray; default: cores / threads")
    p.add_argument("--chunk-size", type=int, default=8, metavar="N", help="frames per passes task (default 8)")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="threads inside each task, fixed whichever executor runs it (default 2)")
    p.add_argument("--task-timeout", type=float, metavar="SECONDS", help="per-task time limit (default: by stage and frame count)")
    p.add_argument("--retries", type=int, default=3, metavar="N", help="retries of a task that dies or times out (default 3)")
    p.add_argument("--max-failed-tasks", type=int, default=1, metavar="N", help="stop starting new tasks after N tasks failed for good (default 1)")
    p.add_argument("--store", metavar="DIR", help="content-addressed store (default $GREYBOX_STORE or ~/.cache/greybox/store)")
    p.add_argument("--max-memory", metavar="SIZE", help="memory a task may use, e.g. 8G or 8GiB (default: what its machine has free); "
                   "a task estimated above it is refused before it renders")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greybox", description="Procedural Blender scenes, exact passes, ControlNet-guided stylisation.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check templates and build their scenes; exit 2 on any problem")
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    p.add_argument("--asset-root", dest="asset_roots", action="append", default=[], metavar="DIR",
                   help="a folder the templates' model files may also come from; repeatable")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("templates", help="list the bundled templates")
    p.set_defaults(handler=cmd_templates)

    p = sub.add_parser("passes", help="render exact passes and control images")
    _add_job_options(p, render=False)
    p.set_defaults(handler=cmd_job, job_command="passes")

    p = sub.add_parser("render", help="passes, control images, stylised frames, video, contact sheet, manifest")
    _add_job_options(p, render=True)
    p.set_defaults(handler=cmd_job, job_command="render")

    p = sub.add_parser("status", help="a job's tasks: done, running, failed (with reasons), pending")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("inspect", help="print a job's scene layout (objects, classes, ids, positions) and manifest")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_inspect)
    return parser


def cmd_validate(args) -> int:
    from passes.scene_stage import check_scenes_build
    from scenes.template_loading import format_problem, load_template, problem_as_json

    problems: list[dict] = []
    asset_roots = _asset_roots(args.asset_roots)
    loaded_all = []
    for name in args.files:
        try:
            loaded_all.append((name, load_template(name, args.overrides)))
        except InputError as err:
            found = err.problems or [{"file": name, "key": "", "value": None, "message": str(err)}]
            problems.extend(found)
            if not args.json:
                for problem in found:
                    print(format_problem(problem) if err.problems else f"{name}: {problem['message']}", file=sys.stderr)
    failed: set[str] = set()
    if loaded_all:
        try:  # the same build check a job runs before writing anything (models: one Blender subprocess for all)
            check_scenes_build([(name, l.template, l.resolved, l.source) for name, l in loaded_all], asset_roots=asset_roots)
        except InputError as err:
            problems.extend(err.problems)
            for problem in err.problems:
                failed.update(label for label, _ in loaded_all if label in str(problem["file"]).split(", "))
                if not args.json:
                    print(f"{problem['file']}: {problem['message']}", file=sys.stderr)
    for name, loaded in loaded_all:  # and the reference images a diffusion style reads
        if name in failed or loaded.template.style.stylizer != "diffusion":
            continue
        from scenes.reference_images import reference_image_files

        try:
            reference_image_files(loaded.template, loaded.source)
        except InputError as err:
            failed.add(name)
            found = err.problems or [{"file": name, "key": "", "value": None, "message": str(err)}]
            problems.extend(found)
            if not args.json:
                for problem in found:
                    print(f"{name}: {problem['message']}", file=sys.stderr)
    if not args.json:
        for name, _ in loaded_all:
            if name not in failed:
                print(f"{name}: valid")
    if args.json:
        print(json.dumps([problem_as_json(p) for p in problems], indent=2, allow_nan=False))
    return EXIT_BAD_INPUT if problems else EXIT_OK


def _asset_roots(values: list[str]) -> list[str]:
    """--asset-root folders as absolute paths; each must be an existing folder."""
    import os

    out = []
    for value in values:
        path = os.path.abspath(os.path.expanduser(value))
        if not os.path.isdir(path):
            raise InputError(f"--asset-root {value}: not a folder; give a folder the template's model files may come from")
        out.append(path)
    return out


def cmd_templates(args) -> int:
    from scenes.template_loading import bundled_templates

    entries = bundled_templates()
    width = max((len(name) for name, _ in entries), default=0)
    for name, description in entries:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def _controlnet_overrides(items: list[str]) -> dict[str, str]:
    from scenes.template_schema import CONTROL_PASSES

    out: dict[str, str] = {}
    for item in items:
        pass_name, sep, model = item.partition("=")
        if not sep or not pass_name or not model:
            raise InputError(f"--controlnet {item!r}: expected PASS=ID_OR_DIR with PASS one of {', '.join(CONTROL_PASSES)}")
        if pass_name not in CONTROL_PASSES:
            raise InputError(f"--controlnet {item!r}: unknown pass {pass_name!r}; "
                             f"use {', '.join(CONTROL_PASSES[:-1])} or {CONTROL_PASSES[-1]}")
        if pass_name in out:
            raise InputError(f"--controlnet {item!r}: pass {pass_name} given twice; keep one")
        out[pass_name] = model
    return out


def cmd_job(args) -> int:
    from render_farm.job_execution import run_job
    from render_farm.job_request import JobRequest

    # 1. Check the options.
    if getattr(args, "revert", None) is not None:
        return _revert(args)
    if args.out is None:
        raise InputError(f"greybox {args.job_command}: --out DIR is required (the output folder)")
    for name, most in (("workers", 512), ("chunk_size", 100_000), ("threads", 512)):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= most:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be from 1 to {most}")
    if args.retries < 0 or args.max_failed_tasks < 1:
        raise InputError("--retries must be >= 0 and --max-failed-tasks >= 1")
    if args.task_timeout is not None and not args.task_timeout > 0:
        raise InputError(f"--task-timeout {args.task_timeout}: must be a positive number of seconds")
    max_memory = None
    if args.max_memory is not None:
        from render_farm.task_memory import parse_size

        max_memory = parse_size(args.max_memory)
    if args.resume and not args.templates and (args.overrides or args.sweeps or args.frames):
        raise InputError("--resume continues the job DIR recorded: give only --out (and executor options), "
                         "or the job's whole command (TEMPLATE included) plus --resume")
    request = None
    if args.templates or not args.resume:  # the same command plus --resume: checked against DIR's record
        if not args.templates:
            raise InputError(f"greybox {args.job_command}: give a TEMPLATE (a .toml path or a bundled name), or --resume")
        request = JobRequest(
            command=args.job_command, templates=list(args.templates), overrides=list(args.overrides),
            sweeps=list(args.sweeps), frames=args.frames, chunk_size=args.chunk_size, threads=args.threads,
            task_timeout_s=args.task_timeout, retries=args.retries, max_failed_tasks=args.max_failed_tasks,
            stylizer=getattr(args, "stylizer", None), model=getattr(args, "model", None),
            controlnets=_controlnet_overrides(getattr(args, "controlnets", [])),
            consistency=getattr(args, "consistency", None), save_blend=args.save_blend,
            asset_roots=_asset_roots(args.asset_roots),
        )
    # 2. Run (SIGTERM stops cleanly, like Ctrl-C).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = run_job(request, args.out, farm=args.farm, workers=args.workers, store=args.store, force=args.force,
                          resume=args.resume, progress=True, max_memory=max_memory)
    finally:
        signal.signal(signal.SIGTERM, previous)
    # 3. Report.
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        r = summary.result
        print(f"{args.job_command}: {r.done} tasks done ({r.ran} ran, {r.cached} reused from the store) in {r.seconds:.1f} s -> {summary.job_dir}")
        if r.units:
            print("  units: " + ", ".join(f"{kind} {c['ran']} ran, {c['reused']} reused" for kind, c in r.units.items()))
        if summary.version is not None:
            v = summary.version
            print(f"  version {v['version']}: {v['kind']}" + (f" of version {v['base']}" if v.get("base") else "")
                  + (f"; earlier versions kept in {summary.job_dir / 'versions'}" if v["version"] > 1 else ""))
        for line in r.recomputed:
            print(f"  recomputed {line}")
        if summary.review_pages:
            print(f"  review: {summary.review_pages[0]}")
    return EXIT_OK


def _revert(args) -> int:
    """``greybox render DIR --revert N`` (or ``--out DIR --revert N``): nothing recomputed."""
    from render_farm.job_versions import run_revert

    if args.out is not None and args.templates:
        raise InputError(f"--revert {args.revert}: give the job folder once: greybox render DIR --revert N")
    folders = [args.out] if args.out is not None else list(args.templates)
    if len(folders) != 1:
        raise InputError(f"--revert {args.revert}: give one job folder: greybox render DIR --revert N")
    if args.overrides or args.sweeps or args.frames or args.force or args.resume:
        raise InputError(f"--revert {args.revert}: takes only the job folder (it recomputes nothing); "
                         "drop --set, --sweep, --frames, --force and --resume")
    entry = run_revert(folders[0], args.revert)
    if args.json:
        print(json.dumps(entry, indent=2, sort_keys=True))
    else:
        print(f"render: version {args.revert} is the latest again (as version {entry['version']}); nothing recomputed")
    return EXIT_OK


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_status(args) -> int:
    from render_farm.job_status import format_status, job_status

    status = job_status(args.dir)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


def cmd_inspect(args) -> int:
    from render_farm.job_status import format_manifest, read_shot_records
    from scenes.scene_layout import format_layout

    from render_farm.job_versions import format_history, read_versions

    shots = read_shot_records(args.dir)
    versions = read_versions(args.dir)
    if args.json:
        payload = next(iter(shots.values())) if len(shots) == 1 else shots
        if versions:
            payload = {**payload, "versions": versions}
        print(json.dumps(payload, indent=2, sort_keys=True))
        return EXIT_OK
    blocks = []
    for record in shots.values():
        parts = [format_layout(record["layout"])] if record["layout"] is not None else []
        if record["manifest"] is not None:
            parts.append(format_manifest(record["manifest"]))
        blocks.append("\n".join(parts))
    if versions:
        blocks.append(format_history(versions))
    print("\n\n".join(blocks))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``greybox`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except GreyboxError as err:
        print(f"greybox: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("greybox: interrupted; tasks in flight were stopped. Continue with the same command plus --resume "
              "(or `greybox render --resume --out DIR`).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as err:
        # A write that failed where no stage turned it into a message (no space, read-only).
        from greybox.errors import write_error

        mapped = write_error(err, err.filename or "an output")
        if mapped is err:
            raise
        print(f"greybox: error: {mapped}", file=sys.stderr)
        return mapped.exit_code


if __name__ == "__main__":
    sys.exit(main())
