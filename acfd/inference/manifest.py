"""Reading an export manifest (``export.json``, written by ``acfd.training.export``) without torch.

The manifest is the contract between export, ``acfd repo``, the served models and the clients.
``FORMAT_VERSION`` 2: the graph takes uint8 NHWC pixels and normalises them itself (format 1 took
float32 NCHW normalised input; such exports must be made again). ``read_manifest`` is what the
served python models, the engines and the repository builder call; a manifest of another format,
or one lacking a key they read, fails with one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
MANIFEST_FILE = "export.json"
REQUIRED_KEYS = ("preset", "onnx", "normalization", "test_scales", "postprocess")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the problem."""


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest ``folder/export.json``, checked for its format version and the keys readers use."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no export manifest (is {folder} an `acfd export` output?)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read the export manifest ({getattr(err, 'strerror', None) or err})") from err
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: export manifest is not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: export manifest is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ManifestError(f"{path}: export manifest lacks {missing}")
    version = manifest.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise ManifestError(
            f"{path}: export format {version}, this acfd reads format {FORMAT_VERSION} "
            f"(uint8 pixel input); export the checkpoint again with `acfd export`"
        )
    return manifest
