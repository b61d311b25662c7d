"""The project's own checkov checks on the translated CloudFormation template.

checkov's built-in checks accept what the project does not: ``CKV_AWS_19`` passes a bucket without
encryption settings (S3 encrypts with SSE-S3 by default) and ``CKV_AWS_26`` passes a topic encrypted with
the AWS managed SNS key, which CloudWatch alarms cannot publish to. ``check_template.py`` fails when one
of these checks did not run, so a check that stops loading cannot pass silently.
"""

from __future__ import annotations

from typing import Any

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult


def _aws_managed_key(key: Any) -> bool:
    """Return whether ``key`` is missing or names an AWS managed key (``alias/aws/...``)."""
    if key is None or key == "":
        return True
    return isinstance(key, str) and (key.startswith("alias/aws/") or ":alias/aws/" in key)


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class BucketCustomerManagedKey(BaseResourceCheck):
    """S3 buckets use SSE-KMS with a customer managed key and an S3 bucket key."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the S3 bucket is encrypted with a customer managed KMS key and a bucket key",
            id="CKV_SCALPBOT_1",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["AWS::S3::Bucket"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        encryption = (conf.get("Properties") or {}).get("BucketEncryption") or {}
        rules = encryption.get("ServerSideEncryptionConfiguration") or []
        if not rules:
            return CheckResult.FAILED
        for rule in rules:
            default = rule.get("ServerSideEncryptionByDefault") or {}
            if default.get("SSEAlgorithm") not in ("aws:kms", "aws:kms:dsse"):
                return CheckResult.FAILED
            if _aws_managed_key(default.get("KMSMasterKeyID")) or not _true(rule.get("BucketKeyEnabled")):
                return CheckResult.FAILED
        return CheckResult.PASSED


class TopicCustomerManagedKey(BaseResourceCheck):
    """SNS topics are encrypted with a customer managed key (CloudWatch alarms can then publish)."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the SNS topic is encrypted with a customer managed KMS key",
            id="CKV_SCALPBOT_2",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["AWS::SNS::Topic"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        key = (conf.get("Properties") or {}).get("KmsMasterKeyId")
        return CheckResult.FAILED if _aws_managed_key(key) else CheckResult.PASSED


class BucketPolicyDeniesInsecureTransport(BaseResourceCheck):
    """S3 bucket policies deny every request made without TLS."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the S3 bucket policy denies requests without TLS (aws:SecureTransport false)",
            id="CKV_SCALPBOT_3",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["AWS::S3::BucketPolicy"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        document = (conf.get("Properties") or {}).get("PolicyDocument") or {}
        for statement in _listed(document.get("Statement") or []):
            if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
                continue
            principal = statement.get("Principal")
            everyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
            all_actions = any(action in ("*", "s3:*") for action in _listed(statement.get("Action")))
            secure = ((statement.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
            if everyone and all_actions and secure in (False, "false"):
                return CheckResult.PASSED
        return CheckResult.FAILED


checks = (BucketCustomerManagedKey(), TopicCustomerManagedKey(), BucketPolicyDeniesInsecureTransport())
