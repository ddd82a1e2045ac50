"""A plugin for video e2e tests: registers swift-ext, plus a reward that writes down the video geometry it got
and what ``geo_tiou`` gives a constructed completion stating the exact interval.

The reward returns None (no opinion), so it does not change training.
"""
import json
import os

import swift_ext.plugin  # noqa: F401
from swift_ext.rewards import GeoReward, GeoTIoU, register_reward
from swift_ext.store import VIDEO_STORE
from swift_ext.video_record import store_key, video_entry
from swift_ext.video_rows import rollout_mode


class GeoVideoProbe(GeoReward):
    def score(self, completion, *, video_geometry, settings, videos=None, solution=None, chat_template_kwargs=None,
              **row):
        exact = f'<answer>{solution[0]} - {solution[1]}</answer>' if isinstance(solution, list) else ''
        tiou, mode = GeoTIoU(args=self.args), rollout_mode(self.args)
        columns = {'videos': [videos], 'solution': [solution], 'chat_template_kwargs': [chat_template_kwargs]}
        with open(os.environ['GEO_PROBE_OUT'], 'a') as f:
            f.write(json.dumps({
                'videos': videos, 'row': chat_template_kwargs, 'solution': solution, 'template': settings.template,
                'geometry': None if video_geometry is None else [g.to_dict() for g in video_geometry],
                'from_template': [VIDEO_STORE.get(video_entry(v).key, store_key(chat_template_kwargs, mode),
                                                  settings.template) is not None for v in videos or []],
                'exact_score': tiou([exact], **columns)[0],
                'completion_score': tiou([completion], **columns)[0],
            }) + '\n')
        return None


register_reward('geo_video_probe', GeoVideoProbe)
