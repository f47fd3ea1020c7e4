"""Model registry: ``build_model(name, **kwargs)`` builds a registered architecture by name.

Registered models (all accept the keyword arguments of :class:`~beadseg.models.unet.UNet`):

* ``"unet"``            plain U-Net (``residual`` and ``attention`` may be switched on).
* ``"residual_unet"``   ``residual=True`` (passing ``residual=False`` is a ConfigError).
* ``"attention_unet"``  ``attention=True`` (passing ``attention=False`` is a ConfigError).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from beadseg.errors import ConfigError
from beadseg.models.unet import UNet

__all__ = ["MODELS", "UNet", "build_model", "register_model"]

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory(**kwargs) -> nn.Module`` under ``name``."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = factory
        return factory

    return decorator


def _accepted_kwargs(factory: ModelFactory) -> set[str] | None:
    """Keyword names the factory accepts, or None if it takes arbitrary ``**kwargs``."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs``.

    Raises:
        ConfigError: unknown model name (the message lists the valid ones), unknown keyword
            argument, or an invalid hyperparameter value.
    """
    if name not in MODELS:
        raise ConfigError(
            f"unknown model {name!r}: valid models are {', '.join(sorted(MODELS))}"
        )
    factory = MODELS[name]
    accepted = _accepted_kwargs(factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ConfigError(
                f"unknown parameter {unknown[0]!r} for model {name!r}: "
                f"valid parameters are {', '.join(sorted(accepted))}"
            )
    return factory(**kwargs)


_UNET_SIGNATURE = inspect.signature(UNet.__init__)
_UNET_SIGNATURE = _UNET_SIGNATURE.replace(
    parameters=[p for p in _UNET_SIGNATURE.parameters.values() if p.name != "self"]
)


def _unet_variant(model_name: str, **forced: bool) -> ModelFactory:
    """Factory for a UNet with some boolean flags forced to True (contradicting them errors)."""

    def factory(**kwargs: Any) -> nn.Module:
        for flag, value in forced.items():
            if flag in kwargs and bool(kwargs[flag]) != value:
                raise ConfigError(
                    f"model {model_name!r} always has {flag}={value}, got {flag}={kwargs[flag]!r}; "
                    f"use model 'unet' to choose {flag} freely"
                )
        return UNet(**{**kwargs, **forced})

    factory.__name__ = model_name
    factory.__doc__ = f"UNet with {', '.join(f'{k}={v}' for k, v in forced.items()) or 'defaults'}."
    factory.__signature__ = _UNET_SIGNATURE  # type: ignore[attr-defined]
    return factory


register_model("unet")(_unet_variant("unet"))
register_model("residual_unet")(_unet_variant("residual_unet", residual=True))
register_model("attention_unet")(_unet_variant("attention_unet", attention=True))
