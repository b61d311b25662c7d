"""An SNS topic with an SQS queue subscribed to it, on the moto server: where tests read notifications."""

from __future__ import annotations

import json
from typing import Any

import boto3


class SnsInbox:
    """An SNS topic on the moto server with an SQS queue subscribed to it (raw delivery off: SNS envelopes)."""

    def __init__(self, endpoint_url: str) -> None:
        self.sns = boto3.client("sns", endpoint_url=endpoint_url, region_name="us-east-1")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1")
        self.topic_arn = self.sns.create_topic(Name="scalpbot-alerts")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.sns.subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"]
        )

    def read(self) -> list[dict[str, Any]]:
        """Return the SNS envelopes waiting in the queue (Subject, Message, MessageAttributes, ...), oldest first."""
        envelopes: list[dict[str, Any]] = []
        while True:
            reply = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not reply.get("Messages"):
                return envelopes
            for message in reply["Messages"]:
                envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
