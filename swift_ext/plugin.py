"""Everything `--external_plugins templates/plugin.py` registers; importing twice is harmless."""
from .rewards import register_geo_rewards
from .templates import register_geo_templates


def register_all() -> dict:
    out = {'templates': register_geo_templates(), 'rewards': register_geo_rewards()}
    try:
        from .callback import register_callbacks
    except ImportError:  # the logging callback ships separately in older checkouts
        return out
    out['callbacks'] = register_callbacks()
    return out


REGISTERED = register_all()
