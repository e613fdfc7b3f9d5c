#!/usr/bin/env python3
"""The GPU trip: one device call that checks the kernels, trains on the packed data, evaluates, and brings
the weights back within the device's return limits (docs/gpu_trip.md has the plan and the time table).

    python3 scripts/gpu_trip.py OUT [--data travel/icf/sources.yaml] [--preset mid] [--size 640]
                                [--batch 32] [--minutes 9] [--train-minutes 4.5]          # on the device
    .venv/bin/python scripts/gpu_trip.py OUT --dry-run [--python PY]                      # here, on CPU

Steps, each recorded in ``OUT/results.json`` as soon as it ends (status ``ok`` / ``failed`` /
``skipped``, seconds, its figures or its error); a failed step does not stop the others:

``env``      Python, torch, triton, numpy, cupy, OpenCV, onnxruntime versions; device, cores; where
             ``acfd`` was imported from (``scripts/acfd_here.py``: the checkout, never an install).
``checks``   ``benchmarks/gpu_check.py --only dam_check loss_check nms`` under a time cap: DAM and MBC
             Triton kernels against their PyTorch references, CuPy NMS against NumPy. Their verdict
             picks ``--kernels triton`` or ``torch`` for training (``torch`` when a check failed).
``train``    ``acfd train`` on ``--data`` (the packed set, ``scripts/pack_data.py``) with ``--max-minutes``;
             if it fails with the Triton kernels and time is left, once more with the torch references.
``eval``     ``acfd eval`` of best.pt (else last.pt) on the hold-outs in ``--data``, and of the embedded
             default on the same images.
``package``  ``scripts/package_weights.py`` (weights only, threshold of best F1), then
             ``scripts/trip_weights.py split`` into ``OUT/weights/`` (parts of at most 15.5 MiB and a
             SHA-256 index; ``trip_weights.py restore`` rebuilds the file here bit-exact).
``bench``    the timing steps of ``gpu_check.py`` (kernel_bench, train_speed, inference, dam_tile_sweep)
             in the time that is left.

``OUT`` gets at most 8 files (results.json, trip.log, gpu_check.json, bench.json, eval.json, the weights'
index and parts), checked at the end. ``--dry-run`` copies exactly what would travel (``git ls-files -co
--exclude-standard`` and the carried folder ``--carry``, default ``travel``; no ``../shared``, no
``.venv``) to a temporary folder and runs this script there with ``--cpu``: the same steps on CPU at
tiny shapes (preset ``tiny``, 128 px, a few iterations, ``TRITON_INTERPRET=1``), with ``--python``'s
interpreter (the device twin). Exit status: 0 when every step is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIP_SCALES = ("288x387", "384x516", "480x645")  # HxW, as the embedded default ships
HERE = ["scripts/acfd_here.py"]
RETURN_FILES, RETURN_FILE_BYTES, RETURN_BYTES = 8, 16 * 2**20, 64 * 2**20

ENV_CODE = r"""
import json, os, platform, sys
import acfd, acfd.training
info = {"python": platform.python_version(), "executable": sys.executable, "cores": os.cpu_count(),
        "acfd": acfd.__file__, "acfd_training": acfd.training.__file__}
for name in ("torch", "triton", "numpy", "cv2", "onnx", "onnxruntime", "cupy", "yaml"):
    try:
        info[name] = __import__(name).__version__
    except Exception as err:
        info[name] = f"missing ({type(err).__name__}: {err})"[:200]
import torch
info["cuda"] = torch.cuda.is_available()
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                cuda_runtime=torch.version.cuda, sms=p.multi_processor_count)
info["triton_interpret"] = os.environ.get("TRITON_INTERPRET")
print("ENV " + json.dumps(info))
"""


class Trip:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.own_work = args.work is None  # a temporary scratch folder, removed after a CPU run
        self.work = Path(args.work or tempfile.mkdtemp(prefix="acfd_trip_")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.deadline = time.time() + 60 * args.minutes
        self.log = (self.out / "trip.log").open("a")
        self.results: dict = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "mode": "cpu dry run" if args.cpu else "device",
            "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
            "steps": {},
        }
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if args.cpu:
            self.env["TRITON_INTERPRET"] = "1"
        self.save()

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self) -> None:
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1) + "\n")
        tmp.replace(self.out / "results.json")

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, cmd: list[str], timeout: float) -> tuple[int, str]:
        """Run ``cmd`` (its own process group, killed whole at ``timeout``), its output streamed into trip.log
        (so a trip killed from outside still has it); ``(status, output)``."""
        self.say(f"$ {' '.join(cmd)}   (cap {timeout:.0f} s)")
        start = self.log.tell()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=max(1.0, timeout))
            note = ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, note = 124, f"\n(killed at its cap of {timeout:.0f} s)"
        self.log.flush()
        with open(self.out / "trip.log", "rb") as f:
            f.seek(start)
            out = f.read().decode(errors="replace") + note
        self.log.write(note.lstrip("\n") + ("\n" if note else ""))
        self.log.flush()
        return code, out

    def py(self, *args: str) -> list[str]:
        return [self.args.python, *HERE, *args]

    def step(self, name: str, fn) -> dict:
        tic = time.time()
        record: dict = {"status": "running"}
        self.results["steps"][name] = record
        self.save()
        try:
            record.update(fn() or {})
            record["status"] = record.get("status", "running") if record.get("status") != "running" else "ok"
        except Exception as err:  # the step's failure is recorded; the trip goes on
            record.update(status="failed", error=f"{type(err).__name__}: {' '.join(str(err).split())[-800:]}")
        record["seconds"] = round(time.time() - tic, 1)
        self.save()
        self.say(
            f"== {name}: {record['status']} in {record['seconds']} s"
            + (f": {record['error']}" if "error" in record else "")
        )
        return record

    # ------------------------------------------------------------ steps

    def s_env(self) -> dict:
        code, out = self.run(self.py("-c", ENV_CODE), 120)
        line = next((ln for ln in out.splitlines() if ln.startswith("ENV ")), None)
        if code != 0 or line is None:
            raise RuntimeError(f"exit {code}: {out.strip()[-600:]}")
        return {"env": json.loads(line[4:])}

    def s_checks(self) -> dict:
        cap = min(self.args.check_minutes * 60, max(10.0, self.left() - 60 * self.args.train_minutes - 90))
        dry = ["--dry-run"] if self.args.cpu else []
        code, out = self.run(
            self.py(
                "benchmarks/gpu_check.py", str(self.work / "checks"), "--only", "dam_check", "loss_check", "nms", *dry
            ),
            cap,
        )
        report_path = self.work / "checks" / "gpu_check.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        if report_path.exists():
            shutil.copy(report_path, self.out / "gpu_check.json")
        verdict = {}
        for name in ("dam_check", "loss_check", "nms"):
            value = report.get(name)
            if value is None:
                verdict[name] = "not run (killed at the cap?)"
            elif isinstance(value, dict) and "error" in value:
                verdict[name] = f"error: {value['error'][:300]}"
            elif name == "nms":
                verdict[name] = "identical" if value.get("all_identical") else f"differs or skipped: {str(value)[:300]}"
            else:
                verdict[name] = "ok" if all(row.get("ok") for row in value) else "MISMATCH"
        kernels_ok = verdict["dam_check"] == "ok" and verdict["loss_check"] == "ok"
        self.kernels = "triton" if kernels_ok else "torch"
        rec = {"exit": code, "verdict": verdict, "train_kernels": self.kernels}
        if code != 0:
            rec.update(status="failed", error=f"gpu_check exit {code}: {out.strip()[-400:]}")
        return rec

    def train_cmd(self, kernels: str, minutes: float, out: Path) -> list[str]:
        a = self.args
        cmd = ["train", "--data", a.data, "--preset", a.preset, "--size", str(a.size), "--batch", str(a.batch)]
        cmd += ["--seed", "0", "--kernels", kernels, "--eval-every", "1000000", "--log-every", "20", "--no-progress"]
        cmd += ["--max-minutes", f"{minutes:.2f}", "--out", str(out)]
        cmd += ["--cache-images"]  # decoded once: the loader only augments (benchmarks/loader_throughput.py)
        if a.init:
            cmd += ["--init", a.init]
        if a.cpu:
            cmd += ["--device", "cpu", "--workers", "1", "--threads", "2", "--max-iters", str(a.max_iters)]
            cmd += ["--precision", "fp32"]
        else:
            cmd += ["--device", "cuda", "--workers", str(a.workers or os.cpu_count()), "--precision", "auto"]
        return self.py(*cmd)

    def s_train(self) -> dict:
        kernels = getattr(self, "kernels", "torch")
        reserve = 60 * self.args.after_train_minutes  # eval + package + margin
        tries = []
        for attempt in (kernels, "torch") if kernels == "triton" else (kernels,):
            minutes = min(self.args.train_minutes, (self.left() - reserve - 45) / 60)
            if minutes < 0.1:
                tries.append({"kernels": attempt, "status": "skipped", "error": "no time left"})
                break
            run_dir = self.work / f"train_{attempt}"
            shutil.rmtree(run_dir, ignore_errors=True)
            tic = time.time()
            code, out = self.run(self.train_cmd(attempt, minutes, run_dir), 60 * minutes + 120)
            t = {
                "kernels": attempt,
                "minutes_budget": round(minutes, 2),
                "exit": code,
                "seconds": round(time.time() - tic, 1),
            }
            t.update(_train_figures(run_dir, out))
            tries.append(t)
            if code == 0 and (run_dir / "last.pt").exists():
                self.run_dir = run_dir
                return {"kernels": attempt, "tries": tries, **{k: v for k, v in t.items() if k != "kernels"}}
            t["error"] = out.strip()[-600:]
        return {
            "status": "failed",
            "tries": tries,
            "error": tries[-1].get("error", "no try ran") if tries else "no try",
        }

    def s_eval(self) -> dict:
        run_dir = getattr(self, "run_dir", None)
        if run_dir is None:
            return {"status": "skipped", "error": "no trained run"}
        weights = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
        extra = ["--device", "cpu", "--scales", "128x128", "--limit", "4"] if self.args.cpu else ["--device", "cuda"]
        rec: dict = {"weights": weights.name}
        for label, w in (("trained", str(weights)), ("default", str(_default_weights()))):
            target = self.work / f"eval_{label}.json"
            code, out = self.run(
                self.py(
                    "eval", "--weights", w, "--data", self.args.data, "--no-progress", "--json", str(target), *extra
                ),
                max(30.0, min(240.0, self.left() - 60)),
            )
            if code != 0 or not target.exists():
                rec[label] = {"error": f"exit {code}: {out.strip()[-400:]}"}
                continue
            result = json.loads(target.read_text())
            rec[label] = {k: result[k] for k in ("ap", "sources", "mean_ap") if k in result} or {"ap": result.get("ap")}
        self.eval_json = self.work / "eval_trained.json"
        (self.out / "eval.json").write_text(json.dumps(rec, indent=1) + "\n")
        if "error" in rec.get("trained", {}):
            rec.update(status="failed", error=rec["trained"]["error"])
        return rec

    def s_package(self) -> dict:
        run_dir = getattr(self, "run_dir", None)
        if run_dir is None:
            return {"status": "skipped", "error": "no trained run"}
        best = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
        weights = self.work / "weights.pt"
        # The embedded default's test scales: the same network at the same input sizes serves at
        # the default's CPU latency, whatever size it was trained at (tests/test_gpu_trip.py checks
        # they match acfd/weights/); the trained size's own scales would cost ~2.8x the pixels.
        cmd = ["scripts/package_weights.py", str(best), str(weights), "--scales", *SHIP_SCALES]
        if getattr(self, "eval_json", None) is not None and self.eval_json.exists():
            cmd += ["--threshold-from", str(self.eval_json)]
        code, out = self.run(self.py(*cmd), 120)
        if code != 0:
            return {"status": "failed", "error": f"package_weights exit {code}: {out.strip()[-400:]}"}
        code, out = self.run(
            [self.args.python, "scripts/trip_weights.py", "split", str(weights), str(self.out / "weights")], 60
        )
        if code != 0:
            return {"status": "failed", "error": f"trip_weights exit {code}: {out.strip()[-400:]}"}
        index = json.loads((self.out / "weights" / "weights.pt.json").read_text())
        return {"bytes": index["bytes"], "sha256": index["sha256"], "parts": len(index["parts"]), "from": best.name}

    def s_bench(self) -> dict:
        cap = self.left() - 20 if not self.args.cpu else min(self.left() - 20, 180.0)
        if cap < 20:
            return {"status": "skipped", "error": f"{max(cap, 0):.0f} s left"}
        dry = ["--dry-run"] if self.args.cpu else []
        only = ["kernel_bench", "train_speed", "inference", "dam_tile_sweep"]
        code, out = self.run(self.py("benchmarks/gpu_check.py", str(self.work / "bench"), "--only", *only, *dry), cap)
        report = self.work / "bench" / "gpu_check.json"
        if report.exists():
            shutil.copy(report, self.out / "bench.json")
        done = [k for k in only if report.exists() and k in json.loads(report.read_text())]
        rec = {"exit": code, "steps_done": done}
        if code not in (0, 1):  # 1: a timing step reported an error inside; the json says which
            rec.update(status="failed", error=f"exit {code}: {out.strip()[-300:]}")
        return rec

    def finish(self) -> int:
        files = [p for p in self.out.rglob("*") if p.is_file()]
        sizes = {str(p.relative_to(self.out)): p.stat().st_size for p in files}
        sizes["results.json"] = sizes.get("results.json", 0)
        problems = []
        if len(sizes) > RETURN_FILES:
            problems.append(f"{len(sizes)} files in OUT (at most {RETURN_FILES} come back)")
        problems += [f"{n}: {b} bytes (over 16 MiB)" for n, b in sizes.items() if b > RETURN_FILE_BYTES]
        if sum(sizes.values()) > RETURN_BYTES:
            problems.append(f"{sum(sizes.values())} bytes in OUT (over 64 MiB)")
        problems += [f"{n}: too deep" for n in sizes if n.count("/") > 2]
        self.results["returns"] = {"files": sizes, "problems": problems}
        self.results["all_ok"] = all(s["status"] == "ok" for s in self.results["steps"].values()) and not problems
        self.results["total_s"] = round(time.time() - (self.deadline - 60 * self.args.minutes), 1)
        self.save()
        if self.own_work and self.args.cpu:
            shutil.rmtree(self.work, ignore_errors=True)
        self.say(f"gpu_trip: all_ok {self.results['all_ok']} in {self.results['total_s']} s -> {self.out}/results.json")
        return 0 if self.results["all_ok"] else 1


def _default_weights() -> Path:
    """The embedded default's file (``acfd.weights.DEFAULT_WEIGHTS``), read without importing ``acfd``."""
    import re

    text = (ROOT / "acfd" / "weights" / "__init__.py").read_text()
    name = re.search(r'with_name\("([^"]+)"\)', text)
    return ROOT / "acfd" / "weights" / (name.group(1) if name else "acfd_mid_cartoons.pt")


def _train_figures(run_dir: Path, out: str) -> dict:
    figures: dict = {}
    for line in out.splitlines():
        low = line.lower()
        if "img/s" in low or "images/s" in low or "budget" in low:
            figures.setdefault("log_lines", []).append(line.strip()[:300])
    if "log_lines" in figures:
        figures["log_lines"] = figures["log_lines"][-6:]
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        figures["metrics_tail"] = metrics.read_text().splitlines()[-3:]
    return figures


def travelling_files(root: Path, carry: list[str]) -> list[Path]:
    """What a device call carries: tracked and untracked-not-ignored files, plus the carried paths."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True, check=True
    ).stdout.decode()
    files = [Path(n) for n in listed.split("\0") if n and (root / n).is_file()]
    for c in carry:
        base = root / c
        if base.is_file():
            files.append(Path(c))
        elif base.is_dir():
            files += [p.relative_to(root) for p in base.rglob("*") if p.is_file()]
    return files


def dry_run(args: argparse.Namespace, argv: list[str]) -> int:
    files = travelling_files(ROOT, args.carry)
    total = sum((ROOT / f).stat().st_size for f in files)
    copy = Path(tempfile.mkdtemp(prefix="acfd_travel_"))
    try:
        for f in files:
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
        print(f"gpu_trip --dry-run: {len(files)} files, {total / 2**20:.1f} MiB would travel -> {copy}", flush=True)
        rest = [a for a in argv if a != "--dry-run"]
        out = str(Path(args.out).resolve())
        rest = [out if a == args.out else a for a in rest]
        cmd = [args.python, str(copy / "scripts" / "gpu_trip.py"), *rest, "--cpu"]
        code = subprocess.call(cmd, cwd=copy)
        results = Path(out) / "results.json"
        if results.exists():
            data = json.loads(results.read_text())
            data["travelled"] = {"files": len(files), "bytes": total, "limit_bytes": RETURN_BYTES}
            results.write_text(json.dumps(data, indent=1) + "\n")
        if total > RETURN_BYTES:
            print(
                f"gpu_trip --dry-run: {total / 2**20:.1f} MiB would travel, over the 64 MiB a call carries", flush=True
            )
            return 1
        return code
    finally:
        if not args.keep_copy:
            shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder for what comes back ($OUT on the device)")
    p.add_argument("--data", default="travel/icf/sources.yaml", help="sources YAML of the packed set")
    p.add_argument("--preset", default="mid")
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--init", default=None, help="acfd train --init: start from these weights (same preset)")
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: every core)")
    p.add_argument("--minutes", type=float, default=9.0, help="the whole trip's wall-clock budget")
    p.add_argument("--train-minutes", type=float, default=4.5, help="acfd train --max-minutes")
    p.add_argument("--check-minutes", type=float, default=1.5, help="cap of the kernel and NMS checks")
    p.add_argument("--after-train-minutes", type=float, default=1.5, help="kept for eval and packaging")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the steps (default: this one)")
    p.add_argument("--dry-run", action="store_true", help="copy what travels, run it there with --cpu")
    p.add_argument("--carry", nargs="*", default=["travel"], help="carried (git-ignored) paths, for --dry-run")
    p.add_argument("--keep-copy", action="store_true", help="--dry-run: keep the copied tree")
    p.add_argument("--cpu", action="store_true", help="tiny shapes on CPU, TRITON_INTERPRET=1 (what --dry-run runs)")
    p.add_argument("--max-iters", type=int, default=4, help="--cpu: training iterations")
    args = p.parse_args(argv)
    if args.dry_run:
        return dry_run(args, argv)
    if args.cpu:
        for flag, value in (("--preset", "tiny"), ("--size", 128), ("--batch", 2)):
            if flag not in argv:
                setattr(args, flag[2:], value)
        if "--minutes" not in argv:
            args.minutes = 10.0
        if "--check-minutes" not in argv:
            args.check_minutes = 4.0
        if "--train-minutes" not in argv:
            args.train_minutes = 1.0
    trip = Trip(args)
    trip.step("env", trip.s_env)
    trip.step("checks", trip.s_checks)
    trip.step("train", trip.s_train)
    trip.step("eval", trip.s_eval)
    trip.step("package", trip.s_package)
    trip.step("bench", trip.s_bench)
    return trip.finish()


if __name__ == "__main__":
    sys.exit(main())
