"""AWS error responses raised from the sandbox's API extensions.

moto serializes a ``ServiceException`` with its code in the service's own error
format (SSM: JSON ``__type``; EC2: the <Response><Errors> XML), and takes the
HTTP status from botocore's model for modelled codes.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.exceptions import EC2ClientError
from moto.ssm.exceptions import SSMException


def ssm_error(code: str, message: str) -> SSMException:
    return SSMException(code, message)


def ec2_error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


class ConstraintViolations:
    """Collects model constraint failures and raises them as one AWS ``ValidationException``.

    AWS's JSON services report them as "N validation error(s) detected: Value 'x' at 'field'
    failed to satisfy constraint: ..." joined with "; ". botocore checks only ``required`` and
    ``min`` on the client, so ``max`` and ``pattern`` violations reach the server.
    """

    def __init__(self) -> None:
        self._messages: list[str] = []

    def add(self, field: str, value: Any, constraint: str) -> None:
        self._messages.append(f"Value '{_render(value)}' at '{field}' failed to satisfy constraint: {constraint}")

    def max_length(self, field: str, value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(field, value, f"Member must have length less than or equal to {limit}")

    def pattern(self, field: str, value: str | None, regex: Any) -> None:
        if value is not None and not regex.fullmatch(value):
            self.add(field, value, f"Member must satisfy regular expression pattern: {regex.pattern}")

    def value_range(self, field: str, value: int | None, low: int, high: int) -> None:
        if value is None:
            return
        if value < low:
            self.add(field, value, f"Member must have value greater than or equal to {low}")
        elif value > high:
            self.add(field, value, f"Member must have value less than or equal to {high}")

    def raise_if_any(self) -> None:
        if self._messages:
            count = len(self._messages)
            noun = "error" if count == 1 else "errors"
            raise ssm_error("ValidationException", f"{count} validation {noun} detected: " + "; ".join(self._messages))


def _render(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)
