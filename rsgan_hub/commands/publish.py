"""`rsgan publish`: each `pretrained/` release to its own Hub model repo, then the app to a Gradio Space
whose variables point at those repos, with huggingface_hub (`create_repo` + `upload_folder`: large
files go through the Hub's own storage, no git-lfs needed).

`--dry-run` prints the plan - every repo, its files, its card's front matter, the Space's README front
matter and variables - and contacts nothing. A real run checks the login first (`whoami`), so an
unreachable Hub or a rejected token stops it, in one line, before any repo is created. The Space's
files are staged in a temporary folder that is removed whatever happens; nothing is written elsewhere.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: app.py, pretrained/, README.md
RELEASES = {  # folder in pretrained/ -> (model repo name, the app's variable; None: not used by the app)
    "dcgan": ("rs-dcgan", "RSGAN_DCGAN_MODEL"),
    "sat2map": ("rs-pix2pix-sat2map", "RSGAN_SAT2MAP_MODEL"),
    "map2sat": ("rs-pix2pix-map2sat", "RSGAN_MAP2SAT_MODEL"),
    "scene-classifier": ("rs-scene-classifier", None),  # the feature extractor of `rsgan evaluate`
}
SPACE_NAME = "rsgan-hub"
SPACE_FILES = ["app.py", "requirements.txt", "rsgan_hub/**/*.py", "examples/*.png", "examples/*.py"]


@dataclass
class Upload:
    """One repo to create and fill: files by their path in the repo, and for a Space its variables."""

    repo_id: str
    repo_type: str  # "model" or "space"
    files: dict[str, Path]  # path in the repo -> local file
    card: dict  # the README's front matter
    readme: str | None = None  # a README written for the upload (the Space's); None: files["README.md"]
    variables: dict[str, str] = field(default_factory=dict)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("publish", help="upload the pretrained models and the app (a Space) to the Hub",
                       description="Upload each pretrained/ release to NAMESPACE/<repo> and the app to the Space "
                                   f"NAMESPACE/{SPACE_NAME}, whose variables point at the model repos.")
    p.add_argument("--namespace", required=True, help="your Hub user or organisation name")
    p.add_argument("--dry-run", action="store_true", help="print what would be uploaded where, and upload nothing")
    p.add_argument("--token", default=None, help="a Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    return p


def gradio_pin(requirements: Path) -> str:
    match = re.search(r"^gradio==([\w.]+)", requirements.read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{requirements} does not pin gradio (gradio==VERSION), which the Space's sdk_version needs")
    return match.group(1)


def space_readme(namespace: str, model_repos: dict[str, str], root: Path = ROOT) -> tuple[str, dict]:
    """The Space's README: the project README's front matter (sdk, sdk_version, app_file, ...) plus the
    model repos it loads, and a short body. sdk_version must be the gradio that requirements.txt pins."""
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(root / "README.md")
    pinned = gradio_pin(root / "requirements.txt")
    if card.data.sdk != "gradio" or card.data.app_file != "app.py" or card.data.sdk_version != pinned:
        raise ValueError(f"README.md front matter must say sdk: gradio, app_file: app.py, sdk_version: {pinned} "
                         f"(requirements.txt's gradio); it says sdk: {card.data.sdk}, app_file: {card.data.app_file}, "
                         f"sdk_version: {card.data.sdk_version}")
    card.data.models = list(model_repos.values())
    links = "\n".join(f"- {variable}: [`{repo}`](https://huggingface.co/{repo})" for variable, repo in model_repos.items())
    subdomain = re.sub(r"[^a-z0-9]+", "-", f"{namespace}-{SPACE_NAME}".lower())
    card.text = (f"\n# rsgan_hub\n\nSynthetic satellite scenes (DCGAN) and satellite ⇄ map translation of whole scenes "
                 f"(pix2pix). Generated or translated imagery is **not ground truth**.\n\nThe models, set by the "
                 f"Space's variables:\n{links}\n\nMCP clients connect to "
                 f"`https://{subdomain}.hf.space/gradio_api/mcp/` (streamable HTTP).\n")
    return str(card), card.data.to_dict()


def plan(namespace: str, root: Path = ROOT) -> list[Upload]:
    """What a publish does, in order: the model repos, then the Space. Reads files; contacts nothing."""
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import validate_repo_id

    uploads, model_repos = [], {}
    for folder, (name, variable) in RELEASES.items():
        source = root / "pretrained" / folder
        if not (source / "config.json").is_file():
            raise ValueError(f"{source} is not a saved release (no config.json)")
        repo_id = f"{namespace}/{name}"
        validate_repo_id(repo_id)  # HFValidationError (a ValueError) for a malformed namespace
        files = {str(p.relative_to(source)): p for p in sorted(source.rglob("*"))  # discriminator/ too
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)}
        card = ModelCard.load(source / "README.md").data.to_dict() if "README.md" in files else {}
        uploads.append(Upload(repo_id, "model", files, card))
        if variable:
            model_repos[variable] = repo_id
    files = {str(p.relative_to(root)): p for pattern in SPACE_FILES for p in sorted(root.glob(pattern))
             if "__pycache__" not in p.parts}
    readme, card = space_readme(namespace, model_repos, root)
    uploads.append(Upload(f"{namespace}/{SPACE_NAME}", "space", files, card, readme, model_repos))
    return uploads


def size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def not_hub_ids(names) -> list[str]:
    """The entries of a card's `datasets` that are no Hub dataset id (a local path, a description)."""
    from ..models.hub import is_hub_dataset_id

    return [name for name in names or [] if not is_hub_dataset_id(name)]


def describe(upload: Upload) -> list[str]:
    """The plan of one repo, as printed by --dry-run."""
    total = sum(p.stat().st_size for p in upload.files.values()) + len((upload.readme or "").encode())
    lines = [f"{upload.repo_type} {upload.repo_id}: {len(upload.files) + bool(upload.readme)} files, {size(total)}"]
    lines += [f"  {path}  {size(local.stat().st_size)}  <- {local}" for path, local in upload.files.items()]
    if upload.readme:
        lines.append(f"  README.md  {size(len(upload.readme.encode()))}  (written for the Space)")
    keys = ("sdk", "sdk_version", "app_file", "python_version", "models") if upload.readme else \
        ("library_name", "pipeline_tag", "license", "tags", "datasets")
    lines += [f"  card {key}: {upload.card[key]}" for key in keys if key in upload.card]
    if bad := not_hub_ids(upload.card.get("datasets")):
        lines.append(f"  note: these card datasets are not Hub dataset ids: {bad}")
    lines += [f"  variable {key}={value}" for key, value in upload.variables.items()]
    return lines


def publish(uploads: list[Upload], token: str | None) -> None:
    """Upload the plan: login checked first, then each repo created (if new) and filled in one commit."""
    import httpx2  # huggingface_hub's HTTP client: a refused connection is one of its errors, not an OSError
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalTokenNotFoundError

    from ..cli import UserError
    from ..io import first_line

    api, done, current = HfApi(token=token), [], None
    try:
        user = api.whoami()["name"]
        print(f"publishing as {user}")
        for upload in uploads:
            current = upload.repo_id
            api.create_repo(upload.repo_id, repo_type=upload.repo_type, exist_ok=True,
                            space_sdk="gradio" if upload.repo_type == "space" else None)
            for key, value in upload.variables.items():  # before the files, so the Space's first build has them
                api.add_space_variable(upload.repo_id, key, value)
            with tempfile.TemporaryDirectory(prefix="rsgan-publish-") as staging:
                for path, local in upload.files.items():
                    (Path(staging) / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(local, Path(staging) / path)
                if upload.readme:
                    (Path(staging) / "README.md").write_text(upload.readme)
                api.upload_folder(repo_id=upload.repo_id, repo_type=upload.repo_type, folder_path=staging,
                                  commit_message="rsgan publish")
            done.append(upload.repo_id)
            print(f"published https://huggingface.co/{'spaces/' if upload.repo_type == 'space' else ''}{upload.repo_id}")
    except LocalTokenNotFoundError:
        raise UserError("not logged in to the Hub: run `hf auth login`, set HF_TOKEN or pass --token; "
                        "nothing was published") from None
    except (OSError, httpx2.HTTPError) as err:
        reason = first_line(err)
        so_far = (f"stopped at {current}; published so far: {', '.join(done) or 'none'} (run again to finish)"
                  if current else "nothing was published")
        raise UserError(f"the Hub at {api.endpoint} refused or could not be reached ({reason}); {so_far}") from None


def run(args: argparse.Namespace) -> None:
    uploads = plan(args.namespace)
    if args.dry_run:
        print("rsgan publish --dry-run: nothing is uploaded")
        for upload in uploads:
            print("\n".join(describe(upload)))
        return
    publish(uploads, args.token)
