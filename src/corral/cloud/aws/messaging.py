"""SQS and SNS for corral: where an agent may publish (its grant's session policy and the
variables naming its queues and topics), and the fleet's events sent in batches. Run in
``worker`` (boto3), never in the daemon.

A queue is a name (its URL is asked of SQS: ``GetQueueUrl``) or a URL; a topic a name (its
ARN is made from the caller's account, then checked: ``GetTopicAttributes``) or an ARN. An
unknown one is a ``CloudError`` of one line, so the agent blocks (or ``events:`` says so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import botocore.exceptions as errors

from corral.cloud.provider import CloudError

BATCH = 10  # SQS SendMessageBatch's most


def variable(kind: str, name: str) -> str:
    """CORRAL_SQS_<QUEUE> / CORRAL_SNS_<TOPIC>: the name upper-cased, [^A-Z0-9] as _."""
    return f"CORRAL_{kind.upper()}_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _code(exc: errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))


def queue(sqs: Any, target: str, where: str) -> tuple[str, str, str]:
    """(name, URL, ARN) of an SQS queue named or given by URL."""
    try:
        if target.startswith(("http://", "https://")):
            url = target
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        else:
            url = sqs.get_queue_url(QueueName=target)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url,
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    except errors.ClientError as exc:
        code = _code(exc)
        if "NonExistent" in code or code in ("QueueDoesNotExist", "AWS.SimpleQueueService."
                                             "NonExistentQueue"):
            raise CloudError(f"{where}: no SQS queue {target} (create it, or fix the name)"
                             ) from None
        raise CloudError(f"{where}: SQS queue {target}: {code} (corral's own identity, "
                         "cloud.aws, needs sqs:GetQueueUrl and sqs:GetQueueAttributes on "
                         "it)") from None
    except errors.BotoCoreError as exc:
        raise CloudError(f"{where}: SQS queue {target}: {type(exc).__name__} (check "
                         "cloud.aws.endpoint_url and the network)") from None
    return url.rstrip("/").rsplit("/", 1)[-1], url, str(arn)


def topic(sns: Any, sts: Any, target: str, region: str, where: str) -> tuple[str, str]:
    """(name, ARN) of an SNS topic named or given by ARN."""
    try:
        arn = target
        if not target.startswith("arn:"):
            account = sts.get_caller_identity()["Account"]
            arn = f"arn:aws:sns:{region}:{account}:{target}"
        sns.get_topic_attributes(TopicArn=arn)
    except errors.ClientError as exc:
        code = _code(exc)
        if code in ("NotFound", "NotFoundException"):
            raise CloudError(f"{where}: no SNS topic {target} (create it, or fix the name)"
                             ) from None
        raise CloudError(f"{where}: SNS topic {target}: {code} (corral's own identity, "
                         "cloud.aws, needs sns:GetTopicAttributes on it)") from None
    except errors.BotoCoreError as exc:
        raise CloudError(f"{where}: SNS topic {target}: {type(exc).__name__} (check "
                         "cloud.aws.endpoint_url and the network)") from None
    return arn.rsplit(":", 1)[-1], arn


def publishing(session: Any, client: Any, publishes: Sequence[str], region: str,
               where: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The session policy's statements allowing only the sends, and the agent's variables."""
    statements: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    queues: list[str] = []
    topics: list[str] = []
    for entry in publishes:
        kind, _, target = entry.partition(":")
        if kind == "sqs":
            name, url, arn = queue(client(session, "sqs"), target, where)
            queues.append(arn)
            env[variable("sqs", name)] = url
        else:
            name, arn = topic(client(session, "sns"), client(session, "sts"), target, region,
                              where)
            topics.append(arn)
            env[variable("sns", name)] = arn
    if queues:
        statements.append({"Effect": "Allow", "Action": "sqs:SendMessage",
                           "Resource": queues})
    if topics:
        statements.append({"Effect": "Allow", "Action": "sns:Publish", "Resource": topics})
    return statements, env


def send(session: Any, client: Any, events: Sequence[dict[str, Any]], *, sqs: str | None,
         sns: str | None, region: str) -> int:
    """Each event as one JSON message to the queue and the topic; the count sent. A batch
    entry SQS refused raises (the daemon sends the batch again: at least once)."""
    where = "events"
    if sqs is not None:
        sqs_client = client(session, "sqs")
        _, url, _ = queue(sqs_client, sqs, f"{where}.sqs")
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            entries = [{"Id": str(i), "MessageBody": json.dumps(e, separators=(",", ":")),
                        "MessageAttributes": {"event": {"DataType": "String",
                                                        "StringValue": str(e["event"])}}}
                       for i, e in enumerate(chunk)]
            try:
                out = sqs_client.send_message_batch(QueueUrl=url, Entries=entries)
            except (errors.ClientError, errors.BotoCoreError) as exc:
                raise CloudError(f"{where}.sqs: {sqs}: {_why(exc)}") from None
            if out.get("Failed"):
                first = out["Failed"][0]
                raise CloudError(f"{where}.sqs: {sqs}: {len(out['Failed'])} messages refused "
                                 f"({first.get('Code')}: {first.get('Message', '')[:120]})")
    if sns is not None:
        sns_client = client(session, "sns")
        _, arn = topic(sns_client, client(session, "sts"), sns, region, f"{where}.sns")
        for event in events:
            body = json.dumps(event, separators=(",", ":"))
            kind = {"event": {"DataType": "String", "StringValue": str(event["event"])}}
            try:
                sns_client.publish(TopicArn=arn, Message=body, MessageAttributes=kind)
            except (errors.ClientError, errors.BotoCoreError) as exc:
                raise CloudError(f"{where}.sns: {sns}: {_why(exc)}") from None
    return len(events)


def _why(exc: Exception) -> str:
    if isinstance(exc, errors.ClientError):
        return f"{_code(exc)} (corral's own identity, cloud.aws, must be allowed to send)"
    return f"{type(exc).__name__} (check cloud.aws.endpoint_url and the network)"
