"""Hub plumbing shared by every rsgan_hub network.

`HubModel` is `torch.nn.Module` + huggingface_hub's `PyTorchModelHubMixin` with three changes a
user can rely on:

* loading is strict: a folder of another model class, missing, empty or truncated weights,
  mismatched shapes, a config value of the wrong type or a config describing a network over
  MAX_PARAMETERS (counted on the meta device, before anything is allocated) raise `ModelLoadError`
  naming what is wrong (the mixin's default is a silent `strict=False` load);
* `config.json` also records `model_class`, so the wrong class is caught before any weight is read;
* `save_pretrained` writes a real model card (YAML metadata, usage, architecture, intended use,
  limitations, and - when given - training details, `model-index` metrics and a sample image).

Weights are always `model.safetensors`; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from huggingface_hub import EvalResult, ModelCard, ModelCardData, PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from ..io import first_line, umask


REPO_URL = "https://github.com/rsgan-hub/rsgan_hub"  # placeholder until the project has a public home
LICENSE = "apache-2.0"
LIBRARY_NAME = "rsgan_hub"
MAX_PARAMETERS = 2_000_000_000  # 8 GB of fp32 weights; the shipped networks have under 60 M


def is_hub_dataset_id(name: str) -> bool:
    """Whether `name` can be a Hub dataset id ("user/name", "name"), not a local path: what a card's
    `datasets` metadata may list (the Hub links each entry to a dataset page)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


class ModelLoadError(RuntimeError):
    """A model folder or repo cannot be loaded as the requested class."""


MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

## How to use

```python
# pip install "rsgan_hub @ git+{{ repo_url }}"
from rsgan_hub import {{ class_name }}

model = {{ class_name }}.from_pretrained("{{ repo_id }}")  # a Hub repo id or a local folder
{{ usage }}
```

From the command line: `{{ cli_usage }}`

## Architecture

{{ architecture }}

Pixel values are in [-1, 1] (RGB), as everywhere in rsgan_hub.

## Intended use and limitations

{{ intended_use }}

Synthetic or translated imagery is **not ground truth**: it can invent buildings, roads and water
that do not exist, and it inherits the biases and geography of its training data. Do not use it
for mapping, navigation, disaster response or any decision about real places without checking
against real imagery.
{% if training %}
## Training

{{ training }}
{% endif %}{% if metrics_table %}
## Evaluation

{{ metrics_table }}
{% endif %}{% if sample_image %}
## Samples

![samples]({{ sample_image }})
{% endif %}
Code: {{ repo_url }}
"""


def find_class(class_names: list[str], name: str) -> int | None:
    """Index of `name` in `class_names`, compared case-insensitively; None when it is not there."""
    lowered = [c.lower() for c in class_names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


class HubModel(torch.nn.Module, PyTorchModelHubMixin, library_name=LIBRARY_NAME, license=LICENSE,
               repo_url=REPO_URL, tags=["remote-sensing", "gan"], model_card_template=MODEL_CARD_TEMPLATE):
    """Base class: strict, class-checked loading and rsgan_hub model cards."""

    # Filled in by subclasses for the model card.
    card_title = "rsgan_hub model"
    card_summary = ""
    card_usage = ""
    card_cli_usage = ""
    card_intended_use = ""

    @property
    def init_config(self) -> dict[str, Any]:
        """The constructor arguments this model was built with (what config.json records), as a new dict:
        `type(model)(**model.init_config)` builds the same network."""
        return dict(self._hub_mixin_config or {})

    # ---- saving -------------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        safetensors.torch.save_model(self, str(Path(save_directory) / constants.SAFETENSORS_SINGLE_FILE))
        config = self.init_config
        config["model_class"] = type(self).__name__
        (Path(save_directory) / constants.CONFIG_NAME).write_text(json.dumps(config, sort_keys=True, indent=2))

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:
        """Save `model.safetensors`, `config.json` and `README.md`, each file atomically.

        `model_card_kwargs` may hold `training` (markdown), `metrics` (dict name -> value),
        `dataset` (id), `dataset_split`, `sample_image` (a file name inside the folder, e.g. a grid
        copied there first) and `repo_id` (for the usage snippet). The files are written in a
        temporary folder beside `save_directory` and moved in one by one, so a failed save leaves
        the previous files intact, and other files in the folder (checkpoints, logs) are untouched.
        """
        save_directory = Path(save_directory)
        push = kwargs.pop("push_to_hub", False)
        save_directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{save_directory.name}.", dir=save_directory.parent) as tmp:
            super().save_pretrained(tmp, **kwargs)
            for name in (constants.SAFETENSORS_SINGLE_FILE, constants.CONFIG_NAME, "README.md"):
                os.chmod(Path(tmp) / name, 0o666 & ~umask())  # safetensors writes 0600; publish like any file
                os.replace(Path(tmp) / name, save_directory / name)
        if push:
            return self.push_to_hub(kwargs.get("repo_id") or save_directory.name,
                                    model_card_kwargs=kwargs.get("model_card_kwargs"))
        return None

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        metrics = kwargs.pop("metrics", None) or {}
        dataset = kwargs.pop("dataset", None)
        split = kwargs.pop("dataset_split", "test")
        repo_id = kwargs.pop("repo_id", None) or f"user/{self.default_repo_name()}"
        if dataset and is_hub_dataset_id(dataset):
            data.datasets = [dataset]
        if metrics:
            data.model_name = repo_id.split("/")[-1]
            data.eval_results = [
                EvalResult(task_type=data.pipeline_tag or "image-generation", dataset_type=dataset or "custom",
                           dataset_name=dataset or "custom", dataset_split=split, metric_type=name,
                           metric_name=name, metric_value=float(value))
                for name, value in metrics.items()
            ]
        table = ""
        if metrics:
            rows = "\n".join(f"| {k} | {float(v):.4g} |" for k, v in metrics.items())
            table = f"Measured on `{dataset or 'custom'}` ({split} split).\n\n| metric | value |\n|---|---|\n{rows}"
        return ModelCard.from_template(
            card_data=data,
            template_str=self._hub_mixin_info.model_card_template,
            repo_url=self._hub_mixin_info.repo_url,
            title=kwargs.pop("title", self.card_title),
            summary=self.card_summary,
            class_name=type(self).__name__,
            repo_id=repo_id,
            usage=self.card_usage,
            cli_usage=self.card_cli_usage.format(repo_id=repo_id),
            architecture=self.architecture_summary(),
            intended_use=self.card_intended_use,
            metrics_table=table,
            **kwargs,
        )

    def default_repo_name(self) -> str:
        return "rs-model"

    def architecture_summary(self) -> str:
        """Markdown: the config and parameter count."""
        config = dict(self._hub_mixin_config or {})
        params = sum(p.numel() for p in self.parameters())
        lines = [f"`{type(self).__name__}`, {params / 1e6:.2f} M parameters. Configuration:", ""]
        lines += [f"- `{k}`: `{json.dumps(v)}`" for k, v in sorted(config.items())]
        return "\n".join(lines)

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, subfolder: str | None = None, **kwargs: Any):
        """Load from a local folder or a Hub repo id - or from `subfolder` inside it (a release's
        "discriminator") - raising `ModelLoadError` with the reason."""
        model_id = str(pretrained_model_name_or_path)
        if subfolder:
            model_id = _subfolder(model_id, subfolder, kwargs)
        config = _read_config(model_id, kwargs)
        found = config.pop("model_class", None)
        if found is not None and found != cls.__name__:
            raise ModelLoadError(f"{model_id} holds a {found}, not a {cls.__name__}")
        unknown = set(config) - set(cls._hub_mixin_init_parameters)
        if unknown:
            raise ModelLoadError(f"{model_id}: config.json has arguments {cls.__name__} does not take: "
                                 f"{sorted(unknown)}")
        _check_config(cls, model_id, config)
        kwargs.setdefault("strict", True)
        try:
            return super().from_pretrained(model_id, **kwargs)
        except ModelLoadError:
            raise
        except (EntryNotFoundError, LocalEntryNotFoundError, FileNotFoundError) as err:
            raise ModelLoadError(f"{model_id}: no model.safetensors found ({type(err).__name__})") from err
        except RuntimeError as err:  # load_state_dict: missing/unexpected keys, shape mismatch
            first = str(err).strip().splitlines()
            raise ModelLoadError(f"{model_id}: weights do not fit {cls.__name__}: "
                                 f"{' '.join(s.strip() for s in first[:4])}") from err

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs: Any):
        """Build the model from its config and load `model.safetensors` (never a pickle)."""
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
        else:
            model_file = hf_hub_download(model_id, constants.SAFETENSORS_SINGLE_FILE, revision=revision,
                                         cache_dir=cache_dir, force_download=force_download, token=token,
                                         local_files_only=local_files_only)
        if not os.path.isfile(model_file):
            raise ModelLoadError(f"no weights file {model_file}")
        try:
            safetensors.torch.load_model(model, model_file, strict=strict, device=map_location)
        except SafetensorError as err:  # an empty, truncated or otherwise damaged file
            raise ModelLoadError(f"{model_file}: damaged or truncated weights file ({err})") from err
        return model.eval()


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value matches a constructor annotation (int, float, str, bool, list[...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # anything else is left to the constructor


def _check_config(cls: type, model_id: str, config: dict) -> None:
    """ModelLoadError for a config value of the wrong type, a config the constructor refuses, or one
    describing more than MAX_PARAMETERS parameters - all found on the meta device, before any
    memory is allocated for weights."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an annotation that cannot be evaluated: leave the types to the constructor
        hints = {}
    for name, value in config.items():
        if name in hints and not _fits(value, hints[name]):
            raise ModelLoadError(f"{model_id}: config.json has {name} = {json.dumps(value)}, which is not "
                                 f"{getattr(hints[name], '__name__', hints[name])}")
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in cls(**config).parameters())
    except (TypeError, ValueError, RuntimeError, OverflowError, IndexError, KeyError) as err:
        raise ModelLoadError(f"{model_id}: config.json does not describe a valid {cls.__name__}: "
                             f"{first_line(err)}") from err
    if count > MAX_PARAMETERS:
        raise ModelLoadError(f"{model_id}: config.json describes a {cls.__name__} of {count:,} parameters, over the "
                             f"limit of {MAX_PARAMETERS:,}; refusing to allocate it")


def _read_config(model_id: str, kwargs: dict) -> dict:
    """config.json of a folder or repo id, or a `ModelLoadError`."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, constants.CONFIG_NAME)
        if not os.path.isfile(path):
            raise ModelLoadError(f"{model_id} has no config.json: not a saved rsgan_hub model")
    elif os.path.exists(model_id):
        raise ModelLoadError(f"{model_id} is a file; pass the model folder (with config.json and model.safetensors)")
    else:
        if model_id.count("/") > 1 or model_id.startswith((".", "/")):
            raise ModelLoadError(f"{model_id}: no such folder")
        try:
            path = hf_hub_download(model_id, constants.CONFIG_NAME, revision=kwargs.get("revision"),
                                   cache_dir=kwargs.get("cache_dir"), token=kwargs.get("token"),
                                   local_files_only=kwargs.get("local_files_only", False))
        except (HfHubHTTPError, LocalEntryNotFoundError, EntryNotFoundError, ValueError, OSError) as err:
            raise ModelLoadError(f"{model_id}: not a local folder, and not loadable from the Hub "
                                 f"({first_line(err, with_type=True)})") from err
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{model_id}: unreadable config.json ({err})") from err
    if not isinstance(config, dict):
        raise ModelLoadError(f"{model_id}: config.json is not a JSON object")
    return config


def _subfolder(model_id: str, subfolder: str, kwargs: dict) -> str:
    """The local folder of `subfolder` in a model folder, or in a Hub repo (its config.json and
    model.safetensors fetched into the HF cache, where they sit side by side)."""
    if os.path.exists(model_id) or model_id.startswith((".", "/")):
        path = os.path.join(model_id, subfolder)
        if not os.path.isdir(path):
            raise ModelLoadError(f"{model_id} has no {subfolder}/ folder")
        return path
    try:
        for name in (constants.CONFIG_NAME, constants.SAFETENSORS_SINGLE_FILE):
            path = hf_hub_download(model_id, name, subfolder=subfolder, revision=kwargs.get("revision"),
                                   cache_dir=kwargs.get("cache_dir"), token=kwargs.get("token"),
                                   local_files_only=kwargs.get("local_files_only", False))
    except (HfHubHTTPError, LocalEntryNotFoundError, EntryNotFoundError, ValueError, OSError) as err:
        raise ModelLoadError(f"{model_id}: no {subfolder}/ loadable from the Hub "
                             f"({first_line(err, with_type=True)})") from err
    return os.path.dirname(path)
