"""A plugin for e2e tests: swift-ext, plus a callback that writes down, independently of swift-ext, how many
images each training step trained on: the rows of ``image_grid_thw`` in every batch the trainer's
``compute_loss`` receives (Qwen templates), with the step it runs in. Select it with
``--callbacks geo_log consumed_probe``; the file is ``$CONSUMED_PROBE_OUT``."""
import json
import os

from swift.callbacks import callbacks_map
from transformers import TrainerCallback

import swift_ext.plugin  # noqa: F401


class ConsumedProbe(TrainerCallback):
    def __init__(self, args=None, trainer=None):
        original = trainer.compute_loss

        def compute_loss(model, inputs, *a, **kw):
            batch = inputs[0] if isinstance(inputs, list) else inputs
            batch = batch.get('model_inputs', batch)
            if model.training:
                grid = batch.get('image_grid_thw')
                with open(os.environ['CONSUMED_PROBE_OUT'], 'a') as f:
                    f.write(json.dumps({'step': trainer.state.global_step + 1,
                                        'images': 0 if grid is None else int(grid.shape[0])}) + '\n')
            return original(model, inputs, *a, **kw)
        trainer.compute_loss = compute_loss


callbacks_map['consumed_probe'] = ConsumedProbe
