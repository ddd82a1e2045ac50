"""A real tiny `swift rlhf --rlhf_type grpo` run on LLaVA-1.5 (``llava1_5_hf_geo``) with `--callbacks geo_log`:
every logged image and every reward's geometry is what the checkpoint's own processor does to that file
(its token expansion, its 336x336 view, where the centre crop put the content)."""
import os

import torch
from PIL import Image, ImageDraw

PARENT = 'llava1_5_hf'
# A square icon (grown, nothing cut), a landscape and a portrait (each cut by the centre crop).
SIZES = (('tiny', 60, 60), ('landscape', 320, 240), ('portrait', 200, 400))


def _dataset(e2e, root):
    """The grounding rows of make_dataset, each image filled with one marker colour (to find it in the view)."""
    path = e2e.dataset(root, SIZES)
    for row in e2e.read_lines(path):
        img = Image.open(row['images'][0]).convert('RGB')
        ImageDraw.Draw(img).rectangle((0, 0, img.width - 1, img.height - 1), fill=(230, 20, 20))
        img.save(row['images'][0])
    return path


def view_geometry(processor, path):
    """(tokens, view size, content extent in the view) as the checkpoint's processor makes the file."""
    from swift.template.vision_utils import load_image
    ip = processor.image_processor
    out = processor(images=[load_image(path)], text='<image>', return_tensors='pt')
    view = out['pixel_values'][0]
    rgb = (view * torch.tensor(ip.image_std).view(3, 1, 1) + torch.tensor(ip.image_mean).view(3, 1, 1)) * 255
    ys, xs = torch.nonzero((rgb[0] > 200) & (rgb[1] < 100), as_tuple=True)
    return (int((out['input_ids'] == 32000).sum()), tuple(view.shape[-2:]),
            (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def test_grpo_llava1_5(e2e, tiny_model, tmp_path):
    from transformers import AutoProcessor
    model = tiny_model(PARENT)
    data = _dataset(e2e, tmp_path / 'data')
    probed, proc, run_dir = e2e.grpo(model, PARENT, data, tmp_path, batch=2 * len(SIZES))
    print(f'\ngrpo {PARENT}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model)
    logged = e2e.geometry_log(run_dir)
    assert {(r['mode'], r['error'], r['mismatch']) for r in logged} == {('rollout', None, None), ('train', None, None)}
    assert len(logged) == 4 * len(SIZES) and len(probed) == 2 * len(SIZES)
    records = logged + [dict(line['geometry'][0], image=line['paths'][0]) for line in probed]
    for rec in records:
        tokens, view, (x1, y1, x2, y2) = view_geometry(processor, rec['image'])
        assert (rec['num_tokens'], (rec['canvas_height'], rec['canvas_width'])) == (tokens, view) == (576, (336, 336))
        # The content the view holds is the recorded content clipped to the view.
        left, top = rec['pad_left'], rec['pad_top']
        assert (x1, y1, x2, y2) == (max(0, left), max(0, top), min(336, left + rec['resized_width']),
                                    min(336, top + rec['resized_height'])), rec['image']
        assert (rec['original_width'], rec['original_height']) == Image.open(rec['image']).size
    cut = {os.path.basename(r['image']).split('_')[0]: dict(r['extra'])['cropped'] for r in logged}
    assert cut == {'tiny': False, 'landscape': True, 'portrait': True}
    for line in probed:
        assert line['from_template'] == [True] and line['coords'] == 'norm1'
    completions = e2e.read_lines(os.path.join(run_dir, 'completions.jsonl'))[0]
    for column in ('GeoIoU', 'GeoFormat'):  # scored (a random model writes no box: 0.0), never skipped
        assert all(isinstance(v, float) and v == v for v in completions[column]), completions[column]

