"""Check the Kubernetes manifests offline against the API's JSON schemas (kubernetes-validate).

    .venv/bin/python deploy/validate.py [deploy/k8s] [--kubernetes-version 1.31.0]

Every document of every ``*.yaml`` under the folder is validated in strict mode (unknown fields are
errors) against the schemas of that Kubernetes version, which the ``kubernetes-validate`` package
ships (no network). Unlike that package's command line, a kind or apiVersion it has no schema for
is an error here, not a warning that passes. One line per resource; exit code 1 when any failed,
2 when there is nothing to check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VERSION = "1.31.0"


def validate_folder(folder: Path, version: str = DEFAULT_VERSION) -> list[tuple[str, str | None]]:
    """(``file: kind/name``, problem or None) for every resource in ``folder``'s YAML files."""
    import kubernetes_validate
    import yaml
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    results: list[tuple[str, str | None]] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as err:
            results.append((str(path), f"not valid YAML ({' '.join(str(err).split())})"))
            continue
        for doc in documents:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                results.append((str(path), "a document without kind and apiVersion"))
                continue
            name = f"{path}: {doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except ValidationError as err:
                where = ".".join(str(p) for p in err.path) or "(top)"
                results.append((name, f"{where}: {' '.join(err.message.split())}"))
            except SchemaNotFoundError:
                results.append((name, f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}"))
            else:
                results.append((name, None))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=HERE / "k8s")
    parser.add_argument("--kubernetes-version", default=DEFAULT_VERSION)
    args = parser.parse_args(argv)
    results = validate_folder(args.folder, args.kubernetes_version)
    if not results:
        print(f"deploy/validate: no *.yaml manifests in {args.folder}", file=sys.stderr)
        return 2
    for name, problem in results:
        print(f"{'ok  ' if problem is None else 'FAIL'} {name}" + (f": {problem}" if problem else ""))
    failed = sum(problem is not None for _, problem in results)
    print(f"deploy/validate: {len(results) - failed} of {len(results)} resources valid for Kubernetes "
          f"{args.kubernetes_version} (strict schemas)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
