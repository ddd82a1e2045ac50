"""Tiny checkpoints: small, deterministic, and loadable by transformers and ms-swift.

The last class runs one sample through ms-swift's own template, collator and
post-encode hook into the model: finite logits there prove the checkpoint is coherent
(token ids, processor geometry and model widths agree with each other).
"""
import os

import pytest
import torch

from swift_ext.cli.make_tiny_model import main
from swift_ext.testing.tiny import make_tiny_model, recipes, run_flags

# The families these tests cover; every other family's recipe is tested in its own file.
FAMILIES = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl', 'internvl_hf')


def special_token_ids(family):
    module = recipes()[family]
    tokens = module.SPECIAL_TOKENS[family] if hasattr(module, 'SPECIAL_TOKENS') else module.INTERNVL_SPECIAL_TOKENS
    return {token: token_id for token, token_id, _ in tokens}

QWEN_FAMILIES = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl')
IMAGE_NAMES = ('tiny', 'landscape', 'portrait', 'wide', 'square')  # conftest's sample_images
MAX_CHECKPOINT_BYTES = 30 * 1024 * 1024
SAMPLE = [{'role': 'user', 'content': '<image>Where is the box?'},
          {'role': 'assistant', 'content': 'here'}]

# Written out here rather than read from swift_ext.testing.tiny, so a typo there fails here.
MODEL_CLASSES = {
    'qwen2_vl': 'Qwen2VLForConditionalGeneration',
    'qwen2_5_vl': 'Qwen2_5_VLForConditionalGeneration',
    'qwen3_vl': 'Qwen3VLForConditionalGeneration',
    'internvl_hf': 'InternVLForConditionalGeneration',
}
QWEN_IDS = {
    '<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645,
    '<|vision_start|>': 151652, '<|vision_end|>': 151653,
    '<|image_pad|>': 151655, '<|video_pad|>': 151656,
}
EXPECTED_IDS = {
    'qwen2_vl': QWEN_IDS,
    'qwen2_5_vl': QWEN_IDS,
    'qwen3_vl': QWEN_IDS,
    'internvl_hf': {**QWEN_IDS, '<img>': 151665, '</img>': 151666, '<IMG_CONTEXT>': 151667,
                    '<video>': 151674},
}
# (patch_size, merge_size, temporal_patch_size, min_pixels, max_pixels) of the real checkpoints.
QWEN_IMAGE_PROCESSOR = {
    'qwen2_vl': (14, 2, 2, 3136, 12845056),
    'qwen2_5_vl': (14, 2, 2, 3136, 12845056),
    'qwen3_vl': (16, 2, 2, 65536, 16777216),
}
# InternVL tiles per sample image: a grid of at most 12 448-pixel tiles chosen by aspect
# ratio (not by size: 50x60 gets 3x4), plus a thumbnail whenever there is more than one.
INTERNVL_TILES = {'tiny': 13, 'landscape': 13, 'portrait': 7, 'wide': 8, 'square': 1}
INTERNVL_TOKENS_PER_TILE = 256


def _read_bytes(directory, name):
    with open(os.path.join(directory, name), 'rb') as f:
        return f.read()


# ------------------------------------------------------------------------------ build
class TestBuild:

    @pytest.mark.parametrize('family', FAMILIES)
    def test_checkpoint_is_small_and_complete(self, tiny_model, family):
        path = tiny_model(family)
        sizes = {name: os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)}
        assert sum(sizes.values()) < MAX_CHECKPOINT_BYTES, sizes
        for name in ('config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
                     'chat_template.jinja', 'processor_config.json', 'preprocessor_config.json',
                     'video_preprocessor_config.json', 'generation_config.json'):
            assert name in sizes, f'{name} missing from {sorted(sizes)}'

    @pytest.mark.parametrize('family', FAMILIES)
    def test_same_seed_gives_same_bytes(self, tiny_model, tmp_path, family):
        first = tiny_model(family)
        second = make_tiny_model(family, str(tmp_path / family))
        assert sorted(os.listdir(first)) == sorted(os.listdir(second))
        for name in os.listdir(first):
            assert _read_bytes(first, name) == _read_bytes(second, name), name

    def test_different_seed_gives_different_weights(self, tiny_model, tmp_path):
        other = make_tiny_model('qwen2_5_vl', str(tmp_path / 'seeded'), seed=1)
        default = tiny_model('qwen2_5_vl')
        assert _read_bytes(default, 'model.safetensors') != _read_bytes(other, 'model.safetensors')
        assert _read_bytes(default, 'tokenizer.json') == _read_bytes(other, 'tokenizer.json')

    def test_existing_checkpoint_is_reused_untouched(self, tiny_model):
        path = tiny_model('qwen2_5_vl')
        before = {name: os.stat(os.path.join(path, name)).st_mtime_ns for name in os.listdir(path)}
        assert make_tiny_model('qwen2_5_vl', path) == path
        after = {name: os.stat(os.path.join(path, name)).st_mtime_ns for name in os.listdir(path)}
        assert before == after

    def test_unknown_family_is_refused(self, tmp_path):
        with pytest.raises(ValueError, match=r"`family` should be one of .*, got 'llava'"):
            make_tiny_model('llava', str(tmp_path / 'llava'))

    def test_other_family_in_out_dir_is_refused(self, tiny_model):
        with pytest.raises(FileExistsError, match='holds a tiny checkpoint .*qwen2_5_vl'):
            make_tiny_model('qwen3_vl', tiny_model('qwen2_5_vl'))

    def test_unrelated_files_in_out_dir_are_refused(self, tmp_path):
        (tmp_path / 'notes.txt').write_text('mine')
        with pytest.raises(FileExistsError, match='holds other files'):
            make_tiny_model('qwen2_vl', str(tmp_path))
        assert os.listdir(tmp_path) == ['notes.txt']  # nothing half-written left behind

    def test_cli_builds_then_reuses(self, tmp_path, capsys):
        out = str(tmp_path / 'cli')
        assert main(['--family', 'qwen2_vl', '--out', out]) == 0
        assert main(['--family', 'qwen2_vl', '--out', out]) == 0
        printed = capsys.readouterr().out
        assert f'--model {out} --model_type qwen2_vl --template qwen2_vl' in printed

    def test_cli_prints_flags_each_command_accepts(self, tmp_path, capsys):
        # `swift infer` stops on --check_model (a training argument): each command's line carries only
        # flags that command's own arguments class declares.
        import dataclasses

        from swift.arguments import InferArguments, RLHFArguments, RolloutArguments, SftArguments
        assert main(['--family', 'qwen2_vl', '--out', str(tmp_path / 'm')]) == 0
        lines = dict(line.split(': ', 1) for line in capsys.readouterr().out.splitlines() if ': --' in line)
        commands = {'swift sft / swift rlhf': (SftArguments, RLHFArguments),
                    'swift infer / swift rollout': (InferArguments, RolloutArguments)}
        assert sorted(lines) == sorted(commands)
        for command, classes in commands.items():
            flags = [word[2:] for word in lines[command].split() if word.startswith('--')]
            for cls in classes:
                fields = {f.name for f in dataclasses.fields(cls)}
                assert set(flags) <= fields, (command, cls.__name__, set(flags) - fields)

    def test_cli_rejects_unknown_family(self, tmp_path, capsys):
        with pytest.raises(SystemExit) as excinfo:
            main(['--family', 'llava', '--out', str(tmp_path)])
        assert excinfo.value.code == 2
        assert 'invalid choice' in capsys.readouterr().err


# ----------------------------------------------------------------------- transformers
class TestTransformers:

    @pytest.mark.parametrize('family', FAMILIES)
    def test_model_loads_offline(self, tiny_model, family):
        import transformers
        path = tiny_model(family)
        config = transformers.AutoConfig.from_pretrained(path)
        assert config.architectures == [MODEL_CLASSES[family]]
        model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(path)
        # Tied embeddings keep the 151k-row table stored once.
        embeddings = model.get_input_embeddings().weight
        assert model.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()
        assert sum(p.numel() for p in model.parameters()) < 6_000_000

    @pytest.mark.parametrize('family', FAMILIES)
    def test_tokenizer_has_special_tokens_at_real_ids(self, tiny_model, family):
        from transformers import AutoConfig, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(tiny_model(family))
        text_config = AutoConfig.from_pretrained(tiny_model(family)).get_text_config()
        assert len(tokenizer) <= text_config.vocab_size  # every id has an embedding row
        for token, token_id in EXPECTED_IDS[family].items():
            assert tokenizer.convert_tokens_to_ids(token) == token_id, token
        # Every special token the builder declares, and each one is a single id.
        for token, token_id in special_token_ids(family).items():
            assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
        assert tokenizer.eos_token == '<|im_end|>' and tokenizer.pad_token_id == 151643

    @pytest.mark.parametrize('family', FAMILIES)
    def test_tokenizer_round_trips_text(self, tiny_model, family):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(tiny_model(family))
        text = 'Where is the box? Top-left at (12, 34) — ok.'
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert len(ids) < len(text.encode())  # common words merge: a real BPE, not bytes

    @pytest.mark.parametrize('family', QWEN_FAMILIES)
    def test_qwen_processor_keeps_real_geometry(self, tiny_model, family):
        from transformers import AutoImageProcessor, AutoProcessor
        patch, merge, temporal, min_pixels, max_pixels = QWEN_IMAGE_PROCESSOR[family]
        path = tiny_model(family)
        for image_processor in (AutoProcessor.from_pretrained(path).image_processor,
                                AutoImageProcessor.from_pretrained(path)):
            assert (image_processor.patch_size, image_processor.merge_size,
                    image_processor.temporal_patch_size) == (patch, merge, temporal)
            size = image_processor.size
            assert (size['shortest_edge'], size['longest_edge']) == (min_pixels, max_pixels)
        video_processor = AutoProcessor.from_pretrained(path).video_processor
        assert (video_processor.patch_size, video_processor.merge_size) == (patch, merge)

    def test_internvl_processor_keeps_real_geometry(self, tiny_model):
        from transformers import AutoConfig, AutoProcessor
        path = tiny_model('internvl_hf')
        processor = AutoProcessor.from_pretrained(path)
        assert type(processor).__name__ == 'InternVLProcessor'
        assert processor.image_seq_length == INTERNVL_TOKENS_PER_TILE
        image_processor = processor.image_processor
        assert dict(image_processor.size) == {'height': 448, 'width': 448}
        assert (image_processor.min_patches, image_processor.max_patches) == (1, 12)
        config = AutoConfig.from_pretrained(path)
        assert tuple(config.vision_config.image_size) == (448, 448)
        assert tuple(config.vision_config.patch_size) == (14, 14)
        assert config.downsample_ratio == 0.5
        assert config.image_token_id == 151667


# ---------------------------------------------------------------------------- ms-swift
@pytest.fixture(scope='module')
def swift_loaded(tiny_model):
    """Factory: ``swift_loaded(family) -> (model, template)`` loaded through ms-swift, cached."""
    cache = {}

    def load(family):
        if family not in cache:
            from swift.model import get_model_processor
            from swift.template import get_template
            model, processor = get_model_processor(
                tiny_model(family), model_type=run_flags(family)['model_type'], device_map='cpu')
            template = get_template(processor, template_type=family)
            template.set_mode('train')
            if template.use_model:  # as swift's SFT pipeline does (see tiny_models' docstring)
                template.model = model
            cache[family] = model, template
        return cache[family]

    return load


class TestSwift:

    # (family, model_type ms-swift settles on when none is passed, or None where it refuses)
    @pytest.mark.parametrize('family, detected', [
        ('qwen2_vl', None),  # shared with qwen2_gme
        ('qwen2_5_vl', 'qwen2_5_vl'),
        ('qwen3_vl', None),  # shared with qwen3_vl_emb, qwen3_vl_reranker
        ('internvl_hf', 'internvl'),
    ])
    def test_model_type_detection_is_as_documented(self, tiny_model, family, detected):
        from swift.model import get_processor
        if detected is None:
            with pytest.raises(ValueError, match='Failed to automatically match `model_type`'):
                get_processor(tiny_model(family))
        else:
            assert get_processor(tiny_model(family)).model_info.model_type == detected

    @pytest.mark.parametrize('family', FAMILIES)
    def test_model_loads_in_float32(self, swift_loaded, family):
        model, template = swift_loaded(family)
        assert type(model).__name__ == MODEL_CLASSES[family]
        assert model.dtype == torch.float32  # from config.json: no --torch_dtype needed
        assert template.template_meta.template_type == family

    @pytest.mark.parametrize('image', IMAGE_NAMES)
    @pytest.mark.parametrize('family', QWEN_FAMILIES)
    def test_qwen_grid_matches_smart_resize(self, swift_loaded, sample_images, family, image):
        from PIL import Image
        from qwen_vl_utils import smart_resize
        _, template = swift_loaded(family)
        encoded = template.encode({'messages': SAMPLE, 'images': [sample_images[image]]})

        patch = QWEN_IMAGE_PROCESSOR[family][0]
        width, height = Image.open(sample_images[image]).size
        resized_height, resized_width = smart_resize(height, width, factor=patch * 2)
        expected_grid = [1, resized_height // patch, resized_width // patch]
        assert encoded['image_grid_thw'].tolist() == [expected_grid]
        input_ids = encoded['input_ids']
        assert input_ids.count(151655) == encoded['image_grid_thw'].prod().item() // 4
        assert input_ids.count(151652) == input_ids.count(151653) == 1

    def test_qwen2_5_landscape_grid_pinned(self, swift_loaded, sample_images):
        # 640x480 -> 644x476 at Qwen2.5-VL defaults: 46 x 34 patches of 14 pixels.
        _, template = swift_loaded('qwen2_5_vl')
        encoded = template.encode({'messages': SAMPLE, 'images': [sample_images['landscape']]})
        assert encoded['image_grid_thw'].tolist() == [[1, 34, 46]]

    @pytest.mark.parametrize('image, tiles', INTERNVL_TILES.items())
    def test_internvl_tiles(self, swift_loaded, sample_images, image, tiles):
        _, template = swift_loaded('internvl_hf')
        encoded = template.encode({'messages': SAMPLE, 'images': [sample_images[image]]})
        assert tuple(encoded['pixel_values'].shape) == (tiles, 3, 448, 448)
        input_ids = encoded['input_ids']
        assert input_ids.count(151667) == INTERNVL_TOKENS_PER_TILE * tiles
        assert input_ids.count(151665) == input_ids.count(151666) == 1  # <img> ... </img>

    # InternVL cuts 640x480 into 13 tiles, 3,300 positions of 151,674 float32 logits (2 GB
    # with the loss): one 448x448 tile keeps it small. test_internvl_tiles covers tiling.
    @pytest.mark.parametrize('family, image', [
        ('qwen2_vl', 'landscape'),
        ('qwen2_5_vl', 'landscape'),
        ('qwen3_vl', 'landscape'),
        ('internvl_hf', 'square'),
    ])
    def test_forward_gives_finite_logits(self, swift_loaded, sample_images, family, image):
        model, template = swift_loaded(family)
        encoded = template.encode({'messages': SAMPLE, 'images': [sample_images[image]]})
        batch = template.data_collator([encoded])
        # The hook turns input_ids + pixel values into inputs_embeds, as in training.
        template.register_post_encode_hook([model])
        try:
            with torch.no_grad():
                output = model(**batch)
        finally:
            template.remove_post_encode_hook()
        vocab_size = model.get_input_embeddings().weight.shape[0]
        assert output.logits.shape == (1, len(encoded['input_ids']), vocab_size)
        assert torch.isfinite(output.logits).all()
        assert torch.isfinite(output.loss)
