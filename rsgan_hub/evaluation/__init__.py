"""Evaluation of rsgan_hub generators, in numbers people can trust and put in a model card.

* `scenes.evaluate_scene_generator` - FID/KID (torchmetrics) and k-NN precision/recall
  (Kynkäänniemi et al. 2019) in the feature space of a shipped remote-sensing `SceneClassifier`,
  sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018), and for conditional
  models class accuracy and the classification accuracy score (Ravuri & Vinyals 2019); beside the
  real-versus-real scores.
* `translation.evaluate_translator` - pixel accuracy, legend mean IoU and RMSE for satellite -> map;
  L1, PSNR, SSIM and FID/KID for map -> satellite; beside a trivial baseline.
* `augmentation.augmentation_gain` - does a conditional generator's output help a classifier trained on k
  real scenes per class? Both arms on the same subsets, the paired gain with a t interval, CAS beside it.
* `report` - the terminal table, the results JSON and `model-index` metadata in a model card.
"""

from .augmentation import augmentation_gain, gain_table, plot_gain, update_card_gain
from .report import card_metrics, format_table, update_model_card, write_results
from .scenes import evaluate_scene_generator
from .translation import LEGEND_OUTLINES, LEGEND_PALETTE, MAP_LEGEND, PREDICTED_CLASSES, evaluate_translator

__all__ = ["evaluate_scene_generator", "evaluate_translator", "update_model_card", "card_metrics", "format_table",
           "write_results", "MAP_LEGEND", "LEGEND_PALETTE", "LEGEND_OUTLINES", "PREDICTED_CLASSES", "augmentation_gain", "gain_table", "plot_gain", "update_card_gain"]
