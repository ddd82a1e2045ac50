"""Everything `--external_plugins templates/plugin.py` registers; importing twice is harmless."""
from .callback import register_callbacks
from .rewards import register_geo_rewards
from .templates import register_geo_templates

REGISTERED = {'templates': register_geo_templates(), 'rewards': register_geo_rewards(),
              'callbacks': register_callbacks()}
