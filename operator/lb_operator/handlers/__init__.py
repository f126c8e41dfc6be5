"""Kopf handlers of the five kinds; ``register()`` puts them on a registry."""

from lb_operator.handlers.registration import register

__all__ = ["register"]
