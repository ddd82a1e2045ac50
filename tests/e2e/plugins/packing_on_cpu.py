"""A plugin for the packing e2e test: swift-ext, plus ms-swift's flash-attention check for packing switched
off, so a CPU run (sdpa only) gets past it. Packed sequences then attend across their boundaries, which the
test does not care about: it checks which images each step trained on, not what the model learnt."""
from swift.arguments import SftArguments

import swift_ext.plugin  # noqa: F401

SftArguments._check_padding_free = lambda self: setattr(self, 'padding_free', bool(self.packing or self.padding_free))
