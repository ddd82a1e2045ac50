"""Everything swift-ext adds to ms-swift; pass this file to `--external_plugins`.

`swift-ext plugin-path` prints its absolute path, so an installed swift-ext works with
``--external_plugins "$(swift-ext plugin-path)"``. ms-swift imports a plugin file by path (not
as part of a package), hence the absolute imports. Importing it twice is harmless.
"""
from swift_ext.callback import register_callbacks
from swift_ext.inference import install as log_inference
from swift_ext.rewards import register_geo_rewards
from swift_ext.runlog import open_channel
from swift_ext.templates import register_geo_templates

register_geo_templates()
register_geo_rewards()
register_callbacks()
log_inference()  # `swift infer --result_path R.jsonl` logs geometry to R_geometry/
# ms-swift imports plugins while it parses arguments, before it starts any worker process (packing
# workers start before the trainer and its geo_log callback): name the channel they will read it from.
open_channel()
