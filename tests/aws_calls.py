"""Records which AWS API operations a boto3 client makes, to compare with declared permissions."""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient

_IAM_SERVICE_PREFIX = {"dynamodb": "dynamodb", "s3": "s3", "sqs": "sqs", "kinesis": "kinesis"}
# Operations whose IAM action is named differently from the API operation.
_IAM_ACTION_OF = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
}


class CallRecorder:
    """Attach to clients; `actions` is the set of IAM actions their calls need."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, str, dict[str, Any]]] = []

    def attach(self, client: BaseClient) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"provide-client-params.{service}", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        self.operations.append((service, model.name, dict(params)))

    @property
    def actions(self) -> set[str]:
        found = set()
        for service, operation, params in self.operations:
            action = _IAM_ACTION_OF.get(
                (service, operation), f"{_IAM_SERVICE_PREFIX[service]}:{operation}"
            )
            found.add(action)
            if (service, operation) == ("s3", "PutObject") and "Tagging" in params:
                found.add("s3:PutObjectTagging")
        return found

    def updates(self, prefix: str) -> int:
        """The UpdateItem calls made to partition keys beginning with `prefix`."""
        return sum(
            1
            for service, operation, params in self.operations
            if (service, operation) == ("dynamodb", "UpdateItem")
            and params["Key"]["partition_key"]["S"].startswith(prefix)
        )

    @property
    def partition_keys(self) -> dict[str, set[str]]:
        """The `partition_key` values reached by each DynamoDB item action, by IAM action: what
        a `dynamodb:LeadingKeys` condition is matched against. Query is left out."""
        found: dict[str, set[str]] = {}
        for service, operation, params in self.operations:
            if service != "dynamodb":
                continue
            keys: list[dict[str, Any]] = []
            if operation in ("UpdateItem", "GetItem", "DeleteItem"):
                keys.append(params["Key"])
            elif operation == "PutItem":
                keys.append(params["Item"])
            elif operation == "BatchGetItem":
                keys += [key for table in params["RequestItems"].values() for key in table["Keys"]]
            elif operation == "BatchWriteItem":
                for requests in params["RequestItems"].values():
                    for request in requests:
                        put, delete = request.get("PutRequest"), request.get("DeleteRequest")
                        keys.append(put["Item"] if put else delete["Key"])
            else:
                continue
            reached = found.setdefault(f"dynamodb:{operation}", set())
            reached.update(key["partition_key"]["S"] for key in keys)
        return found

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o, _ in self.operations if (s, o) == (service, operation))
