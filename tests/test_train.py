"""Training: recipe, models (no download, ever), heads, the loop's run folder, predictions that evaluate reads,
U-MultiClass and U-SelfTrained, the command line. Tiny networks, 32-pixel images, a few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import pandas as pd  # noqa: E402

from chexpert import schema  # noqa: E402
from chexpert.errors import InvalidArgumentError, RunError  # noqa: E402
from chexpert.evaluate import evaluate  # noqa: E402
from chexpert.policy import IGNORE_CLASS, Policy, apply  # noqa: E402
from chexpert.progress import Event  # noqa: E402
from chexpert.store import Store  # noqa: E402
from chexpert.train import Recipe, get_recipe, open_run, predict, train  # noqa: E402
from chexpert.train.heads import Head  # noqa: E402
from chexpert.train.models import WeightsNotFoundError, build_model, imagenet_weights_file  # noqa: E402
from tests.conftest import TRAIN_SIZE as SIZE  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")


def small(**changes: object) -> Recipe:
    """The demo recipe at 32 pixels, a handful of steps."""
    return get_recipe("demo").replace(**{"size": SIZE, "batch_size": 16, "max_steps": 6, "checkpoint_every": 2, "keep_best": 2, "log_every": 1, **changes})


def _cli(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=600, **kwargs)


# -- recipe ---------------------------------------------------------------------------------------


def test_the_default_recipe_is_the_papers() -> None:
    r = Recipe()
    assert (r.model, r.weights, r.size, r.batch_size, r.epochs, r.lr, r.betas, r.checkpoint_every) == (
        "densenet121", "imagenet", 320, 16, 3, 1e-4, (0.9, 0.999), 4800,
    )  # fmt: skip
    assert not r.augments and r.policy == "u-ones"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"channels": 2}, "channels must be one of 1, 3"),
        ({"policy": "u-twos"}, "unknown policy preset 'u-twos'"),
        ({"precision": "fp8"}, "precision must be one of auto, bf16, fp16, off"),
        ({"lr": 0}, "lr must be a number in (0, inf)"),
        ({"views": "oblique"}, "views must be one of all, frontal, lateral"),
    ],
)
def test_bad_recipe_values_name_the_field_and_the_valid_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Recipe(**changes)  # type: ignore[arg-type]  # bad values on purpose: the checks under test


def test_recipes_round_trip_through_json_with_a_policy_object() -> None:
    recipe = Recipe(policy=Policy(uncertain="zeros", per_observation={"Edema": "multiclass"}, observations=("Edema", "Atelectasis")), degrees=5.0)
    assert Recipe.from_json(json.loads(json.dumps(recipe.to_json()))) == recipe
    with pytest.raises(InvalidArgumentError, match="unknown recipe field"):
        Recipe.from_json({"model": "resnet18", "learning_rate": 1})


# -- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channels"), [("densenet121", 1), ("densenet121", 3), ("resnet18", 1), ("tiny-cnn", 1)])
def test_models_by_name_take_one_or_three_planes_and_give_the_outputs_asked(name: str, channels: int) -> None:
    model = build_model(name, outputs=7, channels=channels, weights="none").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, channels, SIZE, SIZE)).shape == (2, 7)


def test_an_unknown_model_lists_valid_names() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown model 'densenet122'.*densenet121"):
        build_model("densenet122", outputs=5)


def test_imagenet_weights_are_never_downloaded_and_the_message_says_where_to_put_which_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    expected = tmp_path / "torch-home" / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    assert imagenet_weights_file("densenet121") == expected
    with pytest.raises(WeightsNotFoundError) as caught:
        build_model("densenet121", outputs=5, weights="imagenet")
    message = str(caught.value)
    assert f"place the file densenet121-a639ec97.pth in {expected.parent}" in message and "TORCH_HOME" in message
    assert isinstance(caught.value, FileNotFoundError)

    # With the file in place (torchvision's old key names, as the real file has), it loads from disk.
    torch.manual_seed(0)
    reference = build_model("densenet121", outputs=1000, weights="none").state_dict()
    renamed = {k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.") if "denselayer" in k else k: v for k, v in reference.items()}
    expected.parent.mkdir(parents=True)
    torch.save(renamed, expected)
    grey = build_model("densenet121", outputs=5, channels=1, weights="imagenet")
    rgb = build_model("densenet121", outputs=5, channels=3, weights="imagenet")
    torch.testing.assert_close(rgb.get_parameter("features.conv0.weight"), reference["features.conv0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(grey.get_parameter("features.conv0.weight"), reference["features.conv0.weight"].sum(dim=1, keepdim=True), rtol=0, atol=0)
    torch.testing.assert_close(rgb.get_parameter("features.denseblock1.denselayer1.norm1.weight"), reference["features.denseblock1.denselayer1.norm1.weight"])
    classifier = rgb.get_submodule("classifier")
    assert isinstance(classifier, torch.nn.Linear) and classifier.out_features == 5


# -- heads ----------------------------------------------------------------------------------------


def test_u_multiclass_head_loss_and_positive_probability() -> None:
    policy = Policy(uncertain="ones", per_observation={"Cardiomegaly": "multiclass"}, observations=("Edema", "Cardiomegaly"))
    labels = np.full((3, 14), schema.Code.BLANK, dtype=np.int8)
    labels[:, schema.OBSERVATIONS.index("Edema")] = [1, 0, -1]
    labels[:, schema.OBSERVATIONS.index("Cardiomegaly")] = [-1, 1, -2]
    targets = apply(policy, labels)
    head = Head.of(targets)
    assert head.outputs == 4 and head.multiclass == (False, True)
    logits = torch.tensor([[0.3, 0.1, -0.2, 0.5], [-1.0, 2.0, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
    assert targets.classes is not None
    batch = {"targets": torch.from_numpy(targets.targets), "mask": torch.from_numpy(targets.mask), "classes": torch.from_numpy(targets.classes)}
    classes = targets.classes[:, 1]
    assert classes.tolist() == [2, 1, 0]  # uncertain, positive, blank -> negative
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], batch["targets"][:, 0], reduction="sum")
    ce = torch.nn.functional.cross_entropy(logits[:, 1:], torch.from_numpy(classes), reduction="sum")
    torch.testing.assert_close(head.loss(logits, batch), (bce + ce) / 6)
    # An ignored three-way entry does not count.
    batch["classes"] = batch["classes"].clone()
    batch["classes"][2, 1] = IGNORE_CLASS
    ce2 = torch.nn.functional.cross_entropy(logits[:2, 1:], torch.from_numpy(classes[:2]), reduction="sum")
    torch.testing.assert_close(head.loss(logits, batch), (bce + ce2) / 5)
    p = head.probabilities(logits)
    torch.testing.assert_close(p[:, 0], torch.sigmoid(logits[:, 0]))
    # Positive against negative only: the uncertain logit does not lower it.
    torch.testing.assert_close(p[:, 1], torch.softmax(logits[:, [1, 2]], dim=1)[:, 1])


# -- training, the run folder, predictions ----------------------------------------------------------


@pytest.fixture(scope="module")
def run_path(train_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "u-ones"
    events: list[Event] = []
    train(train_store, out, small(), progress=events.append)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("checkpoint") == 3
    return out


def test_a_run_folder_holds_the_recipe_logs_the_best_checkpoints_and_a_summary(run_path: Path, train_store: Store) -> None:
    run = open_run(run_path)
    assert run.finished and run.recipe == small() and run.head.outputs == 14
    assert [c.step for c in run.checkpoints] == sorted((c.step for c in run.checkpoints), key=lambda s: -dict((c.step, c.metric) for c in run.checkpoints)[s])
    assert len(run.checkpoints) == 2 and {p.name for p in (run_path / "checkpoints").iterdir()} == {c.path.name for c in run.checkpoints}
    log, valid = run.log(), run.validation()
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6] and np.isfinite(log["loss"]).all()
    assert valid["step"].tolist() == [2, 4, 6] and set(schema.COMPETITION_TASKS) <= set(valid.columns)
    summary = run.summary()
    assert summary["steps"] == 6 and summary["kept"][0]["step"] == run.checkpoints[0].step
    assert json.loads((run_path / "run.json").read_text())["data"]["train_images"] == int((train_store.index.split == 0).sum())


def test_running_a_finished_run_again_returns_it_and_another_recipe_is_refused(run_path: Path, train_store: Store) -> None:
    before = (run_path / "state.pt").stat().st_mtime_ns
    run = train(train_store, run_path, small())
    assert run.finished and (run_path / "state.pt").stat().st_mtime_ns == before
    with pytest.raises(RunError, match="another recipe or data.*recipe lr was 0.001, now 0.01.*overwrite=True"):
        train(train_store, run_path, small(lr=0.01))


def test_overwrite_replaces_the_run_but_never_the_users_files(train_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(train_store, out, small(max_steps=2))
    mine = out / "my-notes.txt"
    mine.write_text("keep me")
    train(train_store, out, small(max_steps=2, seed=1), overwrite=True)
    assert mine.read_text() == "keep me" and open_run(out).recipe.seed == 1


def test_a_folder_of_other_files_is_refused_and_left_alone(train_store: Store, tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError, match="holds other files \\(thesis.tex\\) and is not a run"):
        train(train_store, tmp_path, small(), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_predictions_per_image_and_per_study_are_what_evaluate_reads(run_path: Path, train_store: Store, train_release: Path, tmp_path: Path) -> None:
    predictions = predict(run_path, train_store, split="valid")
    valid = train_store.index.split == schema.SPLITS.index("valid")
    assert len(predictions.images) == valid.sum() and predictions.images.columns[0] == "Path"
    assert list(predictions.images.columns[1:]) == list(schema.OBSERVATIONS)
    values = predictions.images[list(schema.OBSERVATIONS)].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    # Per study: the maximum over its views.
    keys = train_store.index.study_keys()[valid].astype(object)
    expected = predictions.images.assign(Study=keys).groupby("Study")[list(schema.OBSERVATIONS)].max()
    np.testing.assert_allclose(predictions.studies.set_index("Study").loc[expected.index].to_numpy(), expected.to_numpy())
    images_csv, studies_csv = predictions.write(tmp_path / "predictions.csv")
    assert studies_csv == tmp_path / "predictions-studies.csv"
    truth = train_release / "valid.csv"
    by_image = evaluate(images_csv, truth, bootstrap=0).table["auroc"]
    by_study = evaluate(studies_csv, truth, bootstrap=0).table["auroc"]
    pd.testing.assert_series_equal(by_image, by_study, atol=1e-6, rtol=0)
    # The release decoded on the fly gives the store's pixels, hence the same predictions.
    from_release = predict(run_path, train_release, split="valid")
    np.testing.assert_allclose(from_release.images[list(schema.OBSERVATIONS)].to_numpy(), values, rtol=0, atol=1e-6)


def test_the_ensemble_averages_the_best_checkpoints(run_path: Path, train_store: Store) -> None:
    run = open_run(run_path)
    each = [predict(run, train_store, ensemble=k).images[list(schema.OBSERVATIONS)].to_numpy() for k in (1, 2)]
    assert not np.allclose(each[0], each[1])
    members = []
    for checkpoint in run.checkpoints:
        single = type(run)(run.path, run.recipe, run.head, run.identity, (checkpoint,), True)
        members.append(predict(single, train_store).images[list(schema.OBSERVATIONS)].to_numpy())
    np.testing.assert_allclose(each[1], np.mean(members, axis=0), rtol=0, atol=1e-6)


def test_u_multiclass_trains_a_three_way_head(train_store: Store, tmp_path: Path) -> None:
    run = train(train_store, tmp_path / "multiclass", small(policy="u-multiclass", max_steps=3, checkpoint_every=3))
    assert run.head.outputs == 42 and all(run.head.multiclass)
    values = predict(run, train_store).studies[list(schema.OBSERVATIONS)].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()


def test_u_self_trained_trains_with_u_ignore_first_and_labels_the_uncertain_images(train_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "paper-best"
    run = train(train_store, out, small(policy="chexpert-paper-best", max_steps=3, checkpoint_every=3))
    assert open_run(out / "u-ignore").finished
    stage_policy = open_run(out / "u-ignore").recipe.resolved_policy()
    assert stage_policy.uncertainty("Consolidation") == "ignore" and stage_policy.uncertainty("Cardiomegaly") == "multiclass"
    labels = pd.read_csv(out / "soft-labels.csv")
    train_rows = train_store.index.split == 0
    uncertain = train_rows & (train_store.index.observation("Consolidation") == schema.Code.UNCERTAIN)
    assert uncertain.any() and sorted(labels["Path"]) == sorted(train_store.index.path[uncertain].tolist())
    assert labels["Consolidation"].between(0, 1).all()
    assert run.finished and run.head.observations == schema.COMPETITION_TASKS


def test_bf16_autocast_and_channels_last_run_on_the_cpu(train_store: Store, tmp_path: Path) -> None:
    run = train(train_store, tmp_path / "bf16", small(precision="bf16", channels_last=True, max_steps=2, checkpoint_every=2))
    assert np.isfinite(run.log()["loss"]).all()


def test_augmentations_are_drawn_per_step_and_rank() -> None:
    from chexpert.train.device import step_seed
    from chexpert.train.inference import input_transform

    augment = input_transform(small(degrees=10.0, crop_scale=(0.7, 1.0)), train=True)
    images = torch.randint(0, 256, (4, 1, SIZE, SIZE), dtype=torch.uint8)
    draw = [augment(images, generator=torch.Generator().manual_seed(step_seed(0, 0, s))) for s in (1, 1, 2)]
    torch.testing.assert_close(draw[0], draw[1], rtol=0, atol=0)
    assert not torch.equal(draw[0], draw[2])
    assert not input_transform(small(), train=True).training  # no augmentation: training sees what inference sees


def test_a_release_as_source_is_prepared_into_the_run_folder(train_release: Path, tmp_path: Path) -> None:
    run = train(train_release, tmp_path / "run", small(max_steps=1, checkpoint_every=1))
    assert (tmp_path / "run" / f"store-{SIZE}-pad" / "manifest.json").is_file() and run.finished


def test_a_store_of_another_size_is_refused(train_store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="holds 32x32 images \\(pad\\); the recipe asks for 64x64"):
        train(train_store, tmp_path / "run", small(size=64))


# -- command line ---------------------------------------------------------------------------------


def test_train_and_predict_from_the_command_line(train_store: Store, train_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = _cli("train", str(train_store.path), "--out", str(out), "--recipe", "demo", "--size", str(SIZE), "--max-steps", "3", "--checkpoint-every", "3")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.startswith(f"{out}: 3 steps in") and "best mean validation AUROC" in trained.stdout
    assert "validation at step 3: mean AUROC" in trained.stderr
    predicted = _cli("predict", str(out), str(train_release), "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "p.csv").is_file() and (tmp_path / "p-studies.csv").is_file()
    scored = _cli("evaluate", "--predictions", str(tmp_path / "p-studies.csv"), "--truth", str(train_release / "valid.csv"), "--bootstrap", "0")
    assert scored.returncode == 0, scored.stderr


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "ROOT", "--out", "RUN", "--batch-size", "0"], 2, "--batch-size: must be 1 or more"),
        (["train", "ROOT", "--out", "RUN", "--channels", "2"], 2, "--channels: invalid choice"),
        (["predict", "RUN", "ROOT", "--out", "p.csv", "--ensemble", "0"], 2, "--ensemble: must be 1 or more"),
        (["predict", "no-such-run", "ROOT", "--out", "p.csv"], 1, "no such run folder"),
        (["train", "no-such-release", "--out", "RUN"], 1, "chexpert train: "),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], code: int, message: str, tmp_path: Path) -> None:
    result = _cli(*argv, cwd=tmp_path)
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_imagenet_weights_missing_is_one_line_naming_the_file(train_store: Store, tmp_path: Path) -> None:
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "empty-torch-home"))
    result = _cli("train", str(train_store.path), "--out", str(tmp_path / "run"), "--size", str(SIZE), "--max-steps", "1", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"place the file densenet121-a639ec97.pth in {tmp_path / 'empty-torch-home' / 'hub' / 'checkpoints'}" in result.stderr
    assert "--weights none" in result.stderr and len(result.stderr.strip().splitlines()) == 1
