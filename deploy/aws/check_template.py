"""Offline checks of the AWS SAM template: translate it, lint it with cfn-lint, scan it with checkov.

Run with the deploy tools' own virtual environment (``make template``); the tools pin versions of pydantic
and boto3 that conflict with the project's::

    .venv-deploy/bin/python deploy/aws/check_template.py [--template T] [--out DIR]

1. The SAM template is loaded and each image function gets a placeholder ``ImageUri`` (``sam build``
   fills in the real one), then samtranslator turns it into plain CloudFormation, offline: a fixed
   region and an empty managed policy map (the template names no managed policies).
2. The fan-out per symbol is checked on the translated template (``fan_out.py``): each schedule starts its
   state machine with the symbols and the scheduled time, whose Map invokes the job's function once per symbol
   with ``{"symbol", "time"}``, for the default ``Symbols`` and for a basket of three; with three tuning
   workers, the daily one runs prepare, three tune invocations and finish per symbol.
3. cfn-lint checks the translated template; any error or warning fails.
4. checkov scans the translated template with ``deploy/aws/.checkov.yaml``; any failed check fails.
   Skips are documented there (whole checks) or in the resource's ``Metadata.checkov.skip`` (one resource).

Nothing is deployed and no AWS credentials are used. Exit status 0 only when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fan_out import FAN_OUTS, SCHEDULED_TIME, THEN, TUNED, WiringError, check_fan_out

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATE = HERE / "template.yaml"
CHECKOV_CONFIG = HERE / ".checkov.yaml"
OUT_DIR = ROOT / "build" / "aws"
REGION = "us-east-1"
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-1"]
PLACEHOLDER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/scalpbot:{tag}"
# The project's own checks (checkov_checks/): each must have run, or a check that failed to load would pass.
OWN_CHECKS = ("CKV_SCALPBOT_1", "CKV_SCALPBOT_2", "CKV_SCALPBOT_3")


class CheckFailed(Exception):
    """A step found problems; the message says which and where."""


class OfflinePolicyLoader:
    """Managed policy map for samtranslator without calling IAM: the template names no managed policies.

    A policy named in ``Policies`` of a function would fail the translation with "not a valid policy",
    which is the prompt to name it by ARN instead.
    """

    def load(self) -> dict[str, str]:
        return {}


def load_sam(path: Path) -> dict[str, Any]:
    """Return the SAM template with a placeholder ImageUri on every image function."""
    import yaml
    from samtranslator.yaml_helper import yaml_parse

    try:
        template: Any = yaml_parse(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CheckFailed(f"{path} cannot be read as YAML: {e}") from None
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise CheckFailed(f"{path}: not a template with Resources")
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.setdefault("Properties", {})
        if properties.get("PackageType") == "Image" and "ImageUri" not in properties:
            tag = resource.get("Metadata", {}).get("DockerTag", name.lower())
            properties["ImageUri"] = PLACEHOLDER_IMAGE.format(tag=tag)
    return template


def translate(template: dict[str, Any]) -> dict[str, Any]:
    """Return the CloudFormation template samtranslator makes of ``template``."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    try:
        translated: dict[str, Any] = transform(template, {}, OfflinePolicyLoader())
    except InvalidDocumentException as e:
        causes = "\n".join(f"  - {cause.message}" for cause in e.causes)
        raise CheckFailed(f"SAM translation failed:\n{causes}") from None
    return translated


BASKET = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
WORKERS = 3  # tuning workers for the basket's check


def check_wiring(translated: dict[str, Any]) -> None:
    """Check the fan-out per symbol for the default Symbols (one) and for a basket, with the default
    TuningWorkers and with several workers; raise on a miswiring."""
    parameters = translated.get("Parameters", {})
    default = str(parameters["Symbols"]["Default"]).split(",")
    concurrency = int(parameters["SymbolConcurrency"]["Default"])
    one_worker = int(parameters["TuningWorkers"]["Default"])
    cases = ((default, concurrency, one_worker), (list(BASKET), len(BASKET), WORKERS))
    for symbols, at_once, workers in cases:
        try:
            payloads = check_fan_out(translated, symbols, at_once, workers)
        except WiringError as e:
            raise CheckFailed(
                f"fan-out for Symbols={','.join(symbols)}, TuningWorkers={workers}: {e}"
            ) from None
        for machine, items in payloads.items():
            if machine.endswith(TUNED):
                phases = [[(run["phase"], run.get("worker")) for run in runs] for runs in items]
                expected = [
                    ("prepare", None),
                    *(("tune", k) for k in range(1, workers + 1)),
                    ("finish", None),
                ]
                if [runs[0]["symbol"] for runs in items] != symbols or any(p != expected for p in phases):
                    raise CheckFailed(f"{machine} does not run prepare, {workers} workers, finish per symbol")
            elif machine.endswith(THEN):
                if items.get("scope") != "portfolio" or items.get("time") != SCHEDULED_TIME:
                    raise CheckFailed(
                        f"{machine} does not review the portfolio at the scheduled time: {items}"
                    )
            elif [item["symbol"] for item in items] != symbols:
                raise CheckFailed(f"{machine} does not give each of {symbols} its own invocation: {items}")
    print(
        f"fan-out: {len(FAN_OUTS)} state machines invoke each job once per symbol with its scheduled time; "
        f"with TuningWorkers={WORKERS} the daily one runs prepare, {WORKERS} tune workers, finish per symbol; "
        "the weekly one then reviews the portfolio"
    )


def run_cfn_lint(path: Path) -> None:
    """Lint the translated template; raise on any error or warning, print informational findings."""
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(path, config=ManualArgs(regions=LINT_REGIONS, include_checks=["I"]))
    failing = [m for m in matches if m.rule.id[:1] in ("E", "W")]
    for match in matches:
        print(f"  {match.rule.id} {match.message} ({match.path_string or match.linenumber})")
    if failing:
        raise CheckFailed(f"cfn-lint: {len(failing)} error(s) or warning(s) in {path}")
    print(
        f"cfn-lint: no errors or warnings ({len(matches)} informational) in regions {', '.join(LINT_REGIONS)}"
    )


def documented_skips(config: Path) -> dict[str, str]:
    """Return the checks ``config`` skips with the comment above each; raise on a skip without one."""
    skips: dict[str, str] = {}
    comment: list[str] = []
    in_skips = False
    for line in config.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not line.startswith((" ", "-")):
            in_skips = text.startswith("skip-check:")
            comment = []
        elif in_skips and text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif in_skips and text.startswith("- "):
            check_id = text[2:].split("#")[0].strip()
            if not comment:
                raise CheckFailed(f"{config}: skip of {check_id} has no comment saying why")
            skips[check_id] = " ".join(comment)
            comment = []
    return skips


def run_checkov(path: Path, config: Path) -> None:
    """Scan the translated template with checkov; raise on any failed check, list passes and skips."""
    for check_id, reason in documented_skips(config).items():
        print(f"  skipped {check_id} everywhere: {reason}")
    env = dict(
        os.environ,
        CKV_SKIP_PACKAGE_UPDATE_CHECK="true",  # no network: no version check
        BC_SKIP_MAPPING="TRUE",  # no network: no guideline download
        CKV_PARSE_ERROR_FAIL="true",  # a template checkov cannot parse fails instead of passing empty
        LOG_LEVEL="ERROR",
    )
    command = [
        sys.executable,
        "-m",
        "checkov.main",
        "--config-file",
        str(config),
        "--file",
        str(path),
        "--output",
        "json",
    ]
    # From the repository root: the config's external-checks-dir is relative to it.
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    try:
        report: Any = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        raise CheckFailed(f"checkov did not produce a report (exit status {result.returncode})") from None
    reports = report if isinstance(report, list) else [report]
    if not reports or not any(r.get("summary", {}).get("resource_count") for r in reports):
        raise CheckFailed(f"checkov scanned no resources in {path}: {result.stderr[-2000:]}")
    passed = failed = skipped = 0
    ran: set[str] = set()
    for one in reports:
        summary = one["summary"]
        passed += summary["passed"]
        failed += summary["failed"]
        skipped += summary["skipped"]
        if summary.get("parsing_errors"):
            raise CheckFailed(f"checkov could not parse {path}")
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            ran.update(check["check_id"] for check in one["results"].get(kind, []))
        for check in one["results"].get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            if not reason or reason == "No comment provided":
                raise CheckFailed(
                    f"{check['resource']}: skip of {check['check_id']} has no comment saying why"
                )
            print(f"  skipped {check['check_id']} {check['resource']}: {reason}")
        for check in one["results"].get("failed_checks", []):
            print(f"  FAILED {check['check_id']} {check['resource']}: {check['check_name']}")
    print(f"checkov: {passed} passed, {failed} failed, {skipped} skipped (per resource)")
    missing = [check_id for check_id in OWN_CHECKS if check_id not in ran]
    if missing:
        raise CheckFailed(
            f"checkov did not run the project's checks {', '.join(missing)}: {result.stderr[-2000:]}"
        )
    if failed or result.returncode != 0:
        raise CheckFailed(f"checkov: {failed} failed check(s) (exit status {result.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="SAM template (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="folder for the translated template (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        translated = translate(load_sam(args.template))
        args.out.mkdir(parents=True, exist_ok=True)
        out = (args.out / "template.json").resolve()  # checkov runs from the repository root
        out.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        count = len(translated.get("Resources", {}))
        print(f"samtranslator: {args.template} -> {out} ({count} resources)")
        check_wiring(translated)
        run_cfn_lint(out)
        run_checkov(out, CHECKOV_CONFIG)
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    print(f"template checks passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
