"""A wheel install runs the whole system, outside the checkout.

The slow tests build the wheel from this checkout (``pip wheel --no-deps``), install it with its
pinned dependencies into a fresh virtual environment (a real install, not ``--system-site-packages``:
torch 2.13.0 comes from the machine's local wheel, the rest from pip's cache or the package index)
and, from an empty folder outside the checkout, run ``acfd info``, ``acfd export`` + ``acfd repo``
and ``acfd demo --scenes 1``, which starts a real Triton server whose python models import ``acfd``
from that install. About 90 s on 2 CPU cores, half of it the install; the environment (about
3 GB) is removed afterwards. The fast tests check the same promises statically: the templates are
found as package data, and the python models import only modules the wheel ships.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acfd.serving import repo

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "model_repository"
MIN_FREE_GIB = 5  # the environment takes about 3 GB
# import names of the pinned dependencies (pyproject.toml) and the module the Triton stub provides
DEPENDENCY_MODULES = {
    "torch",
    "numpy",
    "triton",
    "tritonclient",
    "pytriton",
    "onnx",
    "onnxruntime",
    "openvino",
    "cv2",
    "matplotlib",
    "yaml",
    "tqdm",
    "triton_python_backend_utils",
}


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _template_files() -> list[str]:
    """Every file of the four model folders that ``acfd repo`` copies or reads, relative to the templates."""
    generated = (".onnx", ".plan", ".pyc")
    files = [p for model in repo.MODELS for p in (TEMPLATES / model).rglob("*") if p.is_file()]
    return sorted(
        str(p.relative_to(TEMPLATES))
        for p in files
        if "__pycache__" not in p.parts and p.suffix not in generated and p.name != repo.MANIFEST_FILE
    )


def _module_file(module: str, config: dict) -> Path | None:
    """The source file of ``acfd...`` module ``module`` if a listed package ships it, else None."""
    mapping, packages = config["package-dir"], set(config["packages"])
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in mapping:
            base = ROOT / mapping[prefix] / Path(*parts[n:]) if parts[n:] else ROOT / mapping[prefix]
            break
    else:
        return None
    for path, package in ((base / "__init__.py", module), (base.with_suffix(".py"), module.rpartition(".")[0])):
        if path.is_file() and package in packages:
            return path
    return None


# ---------------------------------------------------------------- static checks (fast)


def test_templates_are_found_as_package_data():
    assert repo.TEMPLATE_DIR.resolve() == TEMPLATES.resolve()  # an editable install: the checkout's folder
    assert all((repo.TEMPLATE_DIR / model / "config.pbtxt").is_file() for model in repo.MODELS)
    data = _setuptools_config()["package-data"]["acfd.model_repository"]
    unshipped = [f for f in _template_files() if not any(Path(f).match(pattern) for pattern in data)]
    assert not unshipped, f"add to package-data of acfd.model_repository in pyproject.toml: {unshipped}"


def test_python_models_import_only_what_the_wheel_ships():
    config = _setuptools_config()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for model in sorted(TEMPLATES.glob("*/1/model.py")):
        for node in ast.walk(ast.parse(model.read_text(), filename=str(model))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                where = f"{model.relative_to(ROOT)}:{node.lineno}"
                if top == "acfd":
                    assert _module_file(name, config), f"{where}: imports {name}, which no listed package ships"
                else:
                    assert top in stdlib | DEPENDENCY_MODULES, f"{where}: imports {name}, not a dependency of acfd"


# ---------------------------------------------------------------- the wheel, installed (slow)


@dataclass
class WheelInstall:
    root: Path  # a temporary folder outside the checkout, removed afterwards
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def work(self) -> Path:  # an empty folder, the commands' working directory
        return self.root / "work"

    @property
    def wheel(self) -> Path:
        (wheel,) = (self.root / "dist").glob("acfd-*.whl")
        return wheel

    def run(self, *args: str | Path, timeout: float = 600, step: str | None = None) -> subprocess.CompletedProcess:
        """``args`` run in ``work``; a first argument ``acfd`` or ``python`` is the install's own.
        An error exit fails the test with the last lines of its stdout and stderr."""
        if args[0] in ("acfd", "python"):
            args = (self.venv / "bin" / args[0], *args[1:])
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        start = time.perf_counter()
        proc = subprocess.run(
            [str(a) for a in args], cwd=self.work, env=env, capture_output=True, text=True, timeout=timeout
        )
        if step:
            self.seconds[step] = round(time.perf_counter() - start, 1)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        assert proc.returncode == 0, f"{' '.join(str(a) for a in args)} exited {proc.returncode}:\n{tail}"
        return proc


@pytest.fixture(scope="module")
def wheel_install():
    scratch = Path(tempfile.gettempdir())
    free_gib = shutil.disk_usage(scratch).free / 2**30
    if free_gib < MIN_FREE_GIB:
        pytest.skip(f"{scratch}: {free_gib:.1f} GiB free, the wheel install needs {MIN_FREE_GIB} GiB")
    install = WheelInstall(root=Path(tempfile.mkdtemp(prefix="acfd-wheel-", dir=scratch)))
    assert ROOT not in install.root.parents, f"{install.root} is inside the checkout"
    try:
        install.work.mkdir()
        install.run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            install.root / "dist",
            ROOT,
            step="build",
            timeout=300,
        )
        install.run(sys.executable, "-m", "venv", install.venv, step="venv", timeout=300)
        install.run(
            "python", "-m", "pip", "install", "-q", "--progress-bar", "off", install.wheel, step="install", timeout=900
        )
        yield install
    finally:
        print(f"\nwheel install, seconds per step: {install.seconds}")
        shutil.rmtree(install.root, ignore_errors=True)


@pytest.mark.slow
def test_wheel_holds_templates_weights_and_every_package(wheel_install):
    names = set(zipfile.ZipFile(wheel_install.wheel).namelist())
    missing = [f"acfd/model_repository/{f}" for f in _template_files()]
    missing += [p.replace(".", "/") + "/__init__.py" for p in _setuptools_config()["packages"]]
    missing += ["acfd/weights/acfd_mid_cartoons.pt", "acfd/weights/acfd_mid_icartoonface.pt"]
    missing += ["acfd/training/presets/mid.yaml", "acfd/training/presets/mid_cartoons.yaml"]
    missing = [name for name in missing if name not in names]
    assert not missing, f"{wheel_install.wheel.name} lacks {missing}"


@pytest.mark.slow
def test_the_install_is_the_wheel_not_the_checkout(wheel_install):
    code = "import acfd, acfd.serving.repo as r; print(acfd.__file__); print(r.TEMPLATE_DIR)"
    package, templates = (Path(line) for line in wheel_install.run("python", "-c", code).stdout.split())
    site = wheel_install.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert package == site / "acfd" / "__init__.py"
    assert templates == site / "acfd" / "model_repository"


@pytest.mark.slow
def test_info_outside_the_checkout(wheel_install):
    info = json.loads(
        wheel_install.run("acfd", "info", "--preset", "tiny", "--input", "320x320", "--json", step="info").stdout
    )
    assert info["preset"] == "tiny" and info["input"] == [320, 320] and info["anchors"] > 0


@pytest.mark.slow
def test_export_and_repo_outside_the_checkout(wheel_install):
    code = "from acfd.weights import DEFAULT_WEIGHTS; print(DEFAULT_WEIGHTS)"
    weights = wheel_install.run("python", "-c", code).stdout.strip()
    assert Path(weights).is_relative_to(wheel_install.venv)
    out = wheel_install.run("acfd", "export", "--weights", weights, "--out", "export", step="export").stdout
    assert "wrote export/model.onnx" in out and "wrote export/model.int8.onnx" in out
    out = wheel_install.run("acfd", "repo", "--export", "export", "--out", "repo", step="repo").stdout
    assert "acfd repo: wrote repo (target cpu, engine openvino-int8)" in out
    built = wheel_install.work / "repo"
    assert all((built / model / "config.pbtxt").is_file() for model in repo.MODELS)
    assert all((built / model / "1" / "model.py").is_file() for model in ("preprocess", "detector", "postprocess"))
    assert (built / "detector" / "1" / "model.int8.onnx").is_file()


@pytest.mark.slow
def test_demo_outside_the_checkout(wheel_install):
    out = wheel_install.run("acfd", "demo", "--scenes", "1", "--out", "demo", step="demo", timeout=600).stdout
    print(out)
    for line in ("acfd demo: [3/5] server ready in", "mean latency over 1 images: Triton server", "acfd demo: done in"):
        assert line in out, f"acfd demo printed no {line!r}:\n{out[-2000:]}"
    summary = json.loads((wheel_install.work / "demo" / "summary.json").read_text())
    assert Path(summary["weights"]).is_relative_to(wheel_install.venv)
    assert summary["latency"]["images"] == 1 and summary["latency"]["server_mean_ms"] > 0
    (image,) = summary["images"]
    assert image["error"] is None and (wheel_install.work / "demo" / image["annotated"]).is_file()
