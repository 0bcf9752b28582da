"""The ``kuberay-provider`` command.

kuberay-provider validate [--crds DIR | --kubeconfig F [--context C]] FILE...
kuberay-provider example [...]            the README's main job
kuberay-provider local up|down|status     the local control plane (development only)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kuberay_provider import __version__
from kuberay_provider.core.errors import KubeRayProviderError, ManifestError
from kuberay_provider.core.manifests import load_documents, ray_objects
from kuberay_provider.example import add_example_arguments
from kuberay_provider.local.cli import add_local_commands

if TYPE_CHECKING:
    from kuberay_provider.core.validation import SchemaRegistry


def _cmd_validate(args: argparse.Namespace) -> int:
    from kuberay_provider.core.validation import validate_manifest

    schemas = _load_schemas(args)
    if schemas is None:
        print(
            "note: no --crds or --kubeconfig given: checking KubeRay's rules only, not the CRD schema", file=sys.stderr
        )
    failed = checked = 0
    for file in args.files:
        try:
            objects = ray_objects(load_documents(file))
        except ManifestError as exc:
            print(f"{exc}", file=sys.stderr)
            failed += 1
            continue
        for obj in objects:
            checked += 1
            metadata = obj.get("metadata")
            meta = metadata if isinstance(metadata, dict) else {}
            label = f"{obj.get('kind')}/{meta.get('name') or meta.get('generateName') or '?'}"
            errors = validate_manifest(obj, schemas)
            for error in errors:
                print(f"{file}: {label}: {error}", file=sys.stderr)
            failed += bool(errors)
    verdict = "invalid" if failed else "valid"
    print(f"{checked} Ray object(s) in {len(args.files)} file(s) checked: {failed or 'all'} {verdict}")
    return 1 if failed else 0


def _load_schemas(args: argparse.Namespace) -> SchemaRegistry | None:
    """The CRD schemas to check against: from files, from the cluster a kubeconfig names, or none."""
    from kuberay_provider.core.validation import SchemaRegistry

    if args.crds:
        return SchemaRegistry.from_directory(args.crds)
    if args.kubeconfig:
        from kubernetes import config

        with config.new_client_from_config(config_file=args.kubeconfig, context=args.context) as api_client:
            return SchemaRegistry.from_cluster(api_client)
    return None


def _cmd_example(args: argparse.Namespace) -> int:
    from kuberay_provider.example import run_example

    return run_example(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuberay-provider", description="Ray on Kubernetes (KubeRay) for Airflow and Prefect"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="validate RayJob / RayCluster / RayService manifests")
    source = validate.add_mutually_exclusive_group()
    source.add_argument("--crds", type=Path, help="directory of KubeRay CRD YAML files to check the schema against")
    source.add_argument("--kubeconfig", help="read the CRDs installed in this kubeconfig's cluster")
    validate.add_argument("--context", help="kubeconfig context (with --kubeconfig)")
    validate.add_argument("files", nargs="+", type=Path, help="manifest files (multi-document YAML or JSON)")
    validate.set_defaults(func=_cmd_validate)

    example = sub.add_parser("example", help="run the example job end to end on this machine")
    example.set_defaults(func=_cmd_example)
    add_example_arguments(example)
    add_local_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KubeRayProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
