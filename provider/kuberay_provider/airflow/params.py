"""What every operator and sensor of the provider does the same way with its own parameters.

* **Timeouts may be templated.** ``wait_timeout="{{ params.wait_seconds }}"`` renders to a string (unless
  the DAG renders native objects), and a string is no number of seconds: ``SecondsFields`` turns each of
  an operator's ``seconds_fields`` into a float (or None) once rendered, with an error that says what to
  give instead. A value that is no template is checked when the DAG is parsed (``seconds``).
* **Extra XComs obey ``do_xcom_push``.** Besides ``return_value`` the operators push keys of their own (the
  RayJob's name, the dashboard URL, a cluster's name, a serve endpoint): ``push_extra`` pushes none of
  them when the task says ``do_xcom_push=False``, as Airflow itself then pushes no return value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import jinja2
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from kuberay_provider.core.errors import ConfigurationError

NO_SECONDS = ("", "none", "null")  # what a template that rendered None (or nothing) leaves


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def seconds(value: Any, parameter: str) -> float | None:
    """``value`` as a number of seconds (None: no limit); ValueError, saying what to give, otherwise."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in NO_SECONDS:
        return None
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or math.isnan(number) or number < 0:
        raise ConfigurationError(
            f"{parameter} must be a number of seconds (or None for no limit), got {value!r}: give e.g. "
            f'{parameter}=600, or a template that renders a number such as "{{{{ params.{parameter} }}}}"'
        )
    return number


def check_seconds(values: dict[str, Any]) -> None:
    """At DAG parse: every given timeout that is no template must already be a number of seconds."""
    for parameter, value in values.items():
        if not is_template(value):
            seconds(value, parameter)


class SecondsFields:
    """Mixed into an operator before its Airflow base: once its templates are rendered (each try, and each
    resumption after a deferral), the ``seconds_fields`` it names are numbers."""

    seconds_fields: Iterable[str] = ()

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        # Hooked here rather than in render_template_fields: a mapped task is rendered through this method only.
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]  # a mixin: the operator base after it has the method
        if parent is self:
            for field in self.seconds_fields:
                try:
                    setattr(self, field, seconds(getattr(self, field), field))
                except ValueError as error:  # the same template renders the same way in a retry: fail without one
                    raise AirflowFailException(str(error)) from error

    def rendered_seconds(self, field: str) -> float | None:
        """A seconds field as the task uses it: rendered, a number (its declared type admits the template)."""
        return seconds(getattr(self, field), field)


def push_extra(operator: Any, context: Context, key: str, value: Any) -> None:
    """Push an XCom besides ``return_value``, unless the task has ``do_xcom_push=False``."""
    if getattr(operator, "do_xcom_push", True):
        context["ti"].xcom_push(key=key, value=value)
