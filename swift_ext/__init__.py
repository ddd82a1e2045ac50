"""swift-ext: see what a vision-language model sees during ms-swift training.

Light on purpose: importing ``swift_ext`` imports neither torch nor swift. The templates,
rewards and callback register themselves when ``templates/plugin.py`` (or
``swift_ext.plugin``) is imported.
"""
__version__ = '0.1.0'
