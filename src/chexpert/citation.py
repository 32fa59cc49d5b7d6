"""What to cite, and the research use terms that bind every user of the data."""

from __future__ import annotations

from typing import Final

__all__ = ["BIBTEX", "RESEARCH_USE_TERMS"]

BIBTEX: Final[str] = """\
@inproceedings{irvin2019chexpert,
  title     = {CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert Comparison},
  author    = {Irvin, Jeremy and Rajpurkar, Pranav and Ko, Michael and Yu, Yifan and Ciurea-Ilcus, Silviana
               and Chute, Chris and Marklund, Henrik and Haghgoo, Behzad and Ball, Robyn and Shpanskaya, Katie
               and Seekins, Jayne and Mong, David A. and Halabi, Safwan S. and Sandberg, Jesse K. and Jones, Ricky
               and Larson, David B. and Langlotz, Curtis P. and Patel, Bhavik N. and Lungren, Matthew P.
               and Ng, Andrew Y.},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  volume    = {33},
  number    = {01},
  pages     = {590--597},
  year      = {2019},
  doi       = {10.1609/aaai.v33i01.3301590}
}"""

RESEARCH_USE_TERMS: Final[str] = """\
CheXpert is distributed by the Stanford Center for Artificial Intelligence in Medicine and Imaging
(AIMI) under its Research Use Agreement, which every user accepts individually when registering:
https://stanfordaimi.azurewebsites.net/datasets/8cbd9ed4-2eb9-4565-affc-111cf4f7ebe2
In short (the agreement itself governs):
  - use the dataset for non-commercial research and education only;
  - do not share, sell, publish or otherwise redistribute the dataset or any part of it, including
    images derived from it (prepared stores and exported shards are copies: keep them to yourself);
  - do not try to identify any individual in the data;
  - cite the paper above in any publication that uses the data.
chexpert makes no network calls, has no telemetry and no upload helper; to_hf_dataset(...).push_to_hub
is refused for this reason."""
