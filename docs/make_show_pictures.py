"""Regenerate docs/show_llava_next.png, docs/show_internvl.png and docs/show_video.png with `swift-ext show`.

Run from the repository root: ``.venv/bin/python docs/make_show_pictures.py``. The sample image
is generated (a 1000 x 600 drawing, nothing downloaded) into a temporary folder; the command
runs there so the pictures name it ``sample_scene.png``. The video is generated too
(``swift_ext.testing.videos``: each frame shows its index as a number and a bit code).
ms-swift's environment variables are
cleared, so the pictures show each template's defaults.
"""
import os
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw

from swift_ext.families import families
from swift_ext.testing.videos import make_video

DOCS = os.path.dirname(os.path.abspath(__file__))
PICTURES = {'show_llava_next.png': 'llava1_6_mistral_hf_geo', 'show_internvl.png': 'internvl2_5_geo'}
SAMPLE = 'sample_scene.png'
SIZE = (1000, 600)  # 5:3: LLaVA-NeXT pads it onto its square pinpoint, InternVL cuts it 3 x 2
# An 8 s video at 30 fps; Qwen3-VL samples its 1-7 s clip at FPS 2: 12 frames, 6 temporal steps.
VIDEO, VIDEO_PICTURE = 'sample_clip.mp4', 'show_video.png'
VIDEO_ARGS = ('--template', 'qwen3_vl_geo', '--video_start', '1', '--video_end', '7')


def make_sample(path: str) -> None:
    """A sky, a sun, hills and a house: shapes whose distortion by each resize is easy to see."""
    width, height = SIZE
    image = Image.new('RGB', SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(height):  # sky, light towards the horizon
        t = y / height
        draw.line((0, y, width, y), fill=(int(70 + 120 * t), int(130 + 90 * t), int(200 + 40 * t)))
    draw.ellipse((780, 60, 900, 180), fill=(255, 210, 80))
    draw.ellipse((-200, 380, 600, 900), fill=(90, 150, 80))
    draw.ellipse((350, 420, 1250, 950), fill=(70, 130, 65))
    draw.rectangle((420, 300, 620, 470), fill=(200, 60, 50), outline=(60, 30, 20), width=4)
    draw.polygon(((400, 305), (520, 200), (640, 305)), fill=(110, 60, 40))
    draw.rectangle((495, 380, 545, 470), fill=(70, 40, 30))
    draw.rectangle((440, 330, 480, 365), fill=(240, 230, 160))
    draw.rectangle((560, 330, 600, 365), fill=(240, 230, 160))
    image.save(path)


def main() -> int:
    family_vars = {name for family in families().values() for name in family.env_vars}
    env = {k: v for k, v in os.environ.items() if k not in family_vars}
    swift_ext = os.path.join(os.path.dirname(sys.executable), 'swift-ext')
    with tempfile.TemporaryDirectory() as tmp:
        make_sample(os.path.join(tmp, SAMPLE))
        for name, template in PICTURES.items():
            subprocess.run([swift_ext, 'show', SAMPLE, '--template', template, '--out', os.path.join(DOCS, name)],
                           cwd=tmp, env=env, check=True)
        make_video(os.path.join(tmp, VIDEO), num_frames=240, fps=30, width=320, height=240)
        subprocess.run([swift_ext, 'show', VIDEO, *VIDEO_ARGS, '--out', os.path.join(DOCS, VIDEO_PICTURE)],
                       cwd=tmp, env=env, check=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
