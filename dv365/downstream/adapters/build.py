"""Build a registered adapter by name from its config section."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from dv365.model.config import PluginSection, config_error, plugin_options
from dv365.plugins import Plugins, get_plugins


def build_adapter(section: PluginSection | dict[str, Any], *, num_vectors: int, dim: int,
                  out_dim: int, plugins: Plugins | None = None, key: str = "adapter",
                  file: str | None = None):
    """The adapter a config section names (``{"type": "linear", "outputs": 2}``), its
    options validated by the plugin: an unknown type or key is a
    :class:`~dv365.errors.ConfigError` at its key path (``adapter.outputz``)."""
    plugins = plugins or get_plugins()
    if not isinstance(section, PluginSection):
        try:
            section = PluginSection.model_validate(section)
        except ValidationError as exc:
            raise config_error(exc, PluginSection, key, file) from None
    options = plugin_options(plugins, "adapter", section, key, file)
    factory = plugins.adapters.get(section.type).factory
    return factory(options, num_vectors=num_vectors, dim=dim, out_dim=out_dim)
