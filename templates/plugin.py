"""The file to pass to ms-swift: `swift rlhf ... --external_plugins templates/plugin.py`.

Registers the `*_geo` templates, the `geo_iou` / `geo_iou50` / `geo_format` rewards and the
`geo_log` callback. Put your own `@geo_reward` functions below the import.
"""
import swift_ext.plugin  # noqa: F401  (registers on import)
