"""ImageClassifier: backbones, pretrained weights (offline, local files), training metrics, predict, checkpoints."""

from __future__ import annotations

import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from alkit.lightning import pl
from alkit.vision import (
    ImageClassificationData,
    ImageClassifier,
    PretrainedWeightsWarning,
    available_backbones,
    backbones,
    eval_transform,
)
from alkit.vision.backbones import _strip_classifier, backbone_spec, register_backbone
from tests.vision.conftest import make_tree

SIZE = 32


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    defaults = dict(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        max_epochs=1,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


@pytest.mark.parametrize("name", available_backbones())
def test_every_registered_backbone_outputs_its_declared_feature_size(name):
    spec = backbone_spec(name)
    with torch.device("meta"):  # shapes only: no memory, no weights
        backbone = _strip_classifier(spec.constructor(weights=None), spec)
        features = backbone(torch.zeros(2, 3, 64, 64))
    assert tuple(features.shape) == (2, spec.num_features)


def test_resnet18_has_backbone_and_dropout_linear_head():
    model = ImageClassifier("resnet18", num_classes=3, pretrained=False)
    assert isinstance(model.head[0], nn.Dropout) and isinstance(model.head[1], nn.Linear)
    assert model.head[1].in_features == 512 and model.head[1].out_features == 3
    assert model.backbone(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 512)
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 3)


def test_custom_head_module_and_factory():
    head = nn.Sequential(nn.Linear(1280, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    model = ImageClassifier("mobilenet_v2", head=head, pretrained=False)
    assert model.head is head
    model = ImageClassifier("resnet18", head=lambda n, c: nn.Linear(n, c), num_classes=4, pretrained=False)
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"expected \(2, num_classes=2\)"):
        ImageClassifier("resnet18", head=nn.Linear(512, 5), pretrained=False)
    with pytest.raises(ValueError, match=r"cannot take the backbone's features of shape \(N, 512\)"):
        ImageClassifier("resnet18", head=nn.Linear(1280, 2), pretrained=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "vgg11"}, r"backbone='vgg11' is not registered; available backbones: \[.*'resnet18'"),
        ({"optimizer": "rmsprop"}, r"optimizer='rmsprop' is not supported; use one of \['adam', 'adamw', 'sgd'\]"),
        ({"optimizer": nn.Linear}, "is not supported; use one of"),
        ({"learning_rate": -0.1}, "learning_rate must be a positive number, got -0.1"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"pretrained": 3}, "pretrained must be True, False or a path"),
        ({"classes": ["a", "b", "c"]}, "has 3 names but num_classes=2"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    kwargs.setdefault("pretrained", False)
    with pytest.raises(ValueError, match=match):
        ImageClassifier(**kwargs)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty torch hub cache: what this machine (and many clusters) look like."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)


def test_pretrained_offline_warns_and_uses_random_weights(offline):
    with pytest.warns(PretrainedWeightsWarning, match=r"backbone='resnet18'.*RANDOMLY initialised"):
        model = ImageClassifier("resnet18", pretrained=True)
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 2)


def test_pretrained_offline_strict_raises_naming_the_problem(offline):
    with pytest.raises(RuntimeError, match=r"pretrained weights for backbone='resnet18'.*URLError"):
        ImageClassifier("resnet18", pretrained=True, strict_pretrained=True)


def test_shared_mobilenet_features_are_really_loaded(mobilenet_weights: Path):
    model = ImageClassifier("mobilenet_v2", pretrained=mobilenet_weights)
    stored = torch.load(mobilenet_weights, map_location="cpu", weights_only=True)
    assert len(stored) == len(model.backbone.state_dict())
    assert torch.equal(model.backbone.features[0][0].weight, stored["features.0.0.weight"])
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, stored[key]), key
    random = ImageClassifier("mobilenet_v2", pretrained=False)
    assert not torch.equal(random.backbone.features[0][0].weight, stored["features.0.0.weight"])


def test_local_full_torchvision_state_dict_loads_into_backbone(tmp_path: Path):
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18 full.pth"
    torch.save(source.state_dict(), path)  # includes fc.*, which the backbone does not have
    model = ImageClassifier("resnet18", pretrained=path)
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.hparams.pretrained == str(path)


def test_alkit_checkpoint_state_dict_provides_a_backbone(tmp_path: Path):
    trained = ImageClassifier("resnet18", pretrained=False, num_classes=3)
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    model = ImageClassifier("resnet18", pretrained=path, num_classes=2)  # other head, same backbone
    assert torch.equal(model.backbone.conv1.weight, trained.backbone.conv1.weight)


def test_mismatching_or_missing_weight_files_are_errors(tmp_path: Path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(ValueError, match=r"pretrained=.*mobilenet.pth.* does not match the backbone: \d+ missing"):
        ImageClassifier("resnet18", pretrained=path)
    with pytest.raises(FileNotFoundError, match="pretrained=.*nope.pth.*no such weights file"):
        ImageClassifier("resnet18", pretrained=tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("not torch")
    with pytest.raises(ValueError, match="could not be read as a weights-only state dict"):
        ImageClassifier("resnet18", pretrained=tmp_path / "text.pth")


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [("adam", torch.optim.Adam), ("SGD", torch.optim.SGD), ("adamw", torch.optim.AdamW), (torch.optim.RMSprop, None)],
)
def test_configure_optimizers_honours_choice_and_frozen_parameters(optimizer, expected):
    model = ImageClassifier("resnet18", pretrained=False, optimizer=optimizer, learning_rate=0.05)
    for p in model.backbone.parameters():
        p.requires_grad = False
    opt = model.configure_optimizers()
    assert isinstance(opt, expected or optimizer)
    assert opt.param_groups[0]["lr"] == 0.05
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.head.parameters()}
    if expected is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == 0.9


@pytest.fixture
def tiny_data(tmp_path: Path) -> ImageClassificationData:
    layout = {"ants": [(f"a{i}.png", "RGB") for i in range(4)], "bees": [(f"b{i}.gif", "P") for i in range(4)]}
    train = make_tree(tmp_path / "train", layout)
    val = make_tree(tmp_path / "val", {"ants": [("va.png", "RGB")], "bees": [("vb.png", "L")]})
    return ImageClassificationData.from_folders(
        train_folder=train, val_folder=val, test_folder=val, predict_folder=val / "bees", image_size=SIZE
    )


def test_fit_validate_test_predict_log_the_named_metrics(tiny_data, tmp_path: Path):
    model = ImageClassifier("resnet18", pretrained=False, num_classes=2)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=tiny_data)
    assert {"train_loss", "val_loss", "val_acc"} <= set(trainer.callback_metrics)
    (test_metrics,) = trainer.test(model, datamodule=tiny_data, verbose=False)
    assert set(test_metrics) == {"test_loss", "test_acc"}
    assert 0.0 <= test_metrics["test_acc"] <= 1.0
    (probabilities,) = trainer.predict(model, datamodule=tiny_data)
    assert probabilities.shape == (1, 2)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(1))


def test_fit_without_validation_folder_runs(tmp_path: Path):
    train = make_tree(tmp_path / "train", {"a": [("0.png", "RGB"), ("1.png", "RGB")], "b": [("2.png", "RGB")]})
    dm = ImageClassificationData.from_folders(train_folder=train, image_size=SIZE)
    model = ImageClassifier("resnet18", pretrained=False)
    _trainer(tmp_path, max_epochs=1).fit(model, datamodule=dm)
    assert model.classes == ["a", "b"]


def _colour_tree(root: Path, per_class: int = 4) -> Path:
    """Two classes a CNN tells apart at once: reddish noise ("ants") and bluish noise ("bees")."""
    rng = np.random.default_rng(0)
    for name, channel in (("ants", 0), ("bees", 2)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 96, size=(30, 40, 3))
            pixels[..., channel] += 160
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / name / f"{i}.png")
    return root


def test_training_changes_the_weights_and_lowers_the_loss(tmp_path: Path):
    """Fitting moves the weights and lowers the training loss, on a task where that is guaranteed.

    The previous version fitted 8 random-noise images in batches of 4 and measured the loss on all 8 at once:
    memorising noise through BatchNorm statistics of a different batch passed on one CPU and failed on another
    (loss 0.676 after vs 0.659 before on an AMD EPYC). Here the classes differ in colour, the whole set is one batch
    (the loss measured is exactly the objective minimised, same BatchNorm statistics) and the inputs are
    deterministic. Over 12 seeds, with AVX-512, AVX2 and SSE4.2 kernels, 4 epochs took the loss to at most 0.2% of
    its initial value; the test asks for 50%.
    """
    torch.manual_seed(0)
    dm = ImageClassificationData.from_folders(
        train_folder=_colour_tree(tmp_path / "train"),
        image_size=SIZE,
        batch_size=8,
        transforms={"train": eval_transform(SIZE)},
    )
    model = ImageClassifier("resnet18", pretrained=False, learning_rate=1e-3, dropout=0.0)
    x, y = next(iter(DataLoader(dm.train_dataset, batch_size=len(dm.train_dataset))))
    assert len(x) == 8 and y.tolist().count(0) == 4

    def loss() -> float:  # train-mode BatchNorm (batch statistics of the whole set), as during fitting
        model.train()
        with torch.no_grad():
            return model.loss_fn(model(x), y).item()

    before = loss()
    head_before = model.head[1].weight.detach().clone()
    _trainer(tmp_path, max_epochs=4).fit(model, datamodule=dm)
    assert not torch.equal(head_before, model.head[1].weight)
    after = loss()
    assert after < 0.5 * before, (before, after)


def test_predict_returns_datamodule_class_names_and_survives_a_checkpoint(
    tiny_data, tmp_path: Path, monkeypatch, offline
):
    with pytest.warns(PretrainedWeightsWarning):
        model = ImageClassifier("resnet18", pretrained=True)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=tiny_data)
    assert model.classes == ["ants", "bees"]
    paths = tiny_data.train_dataset.paths[:3]
    names, probabilities = model.predict(paths, return_probabilities=True)
    assert len(names) == 3 and set(names) <= {"ants", "bees"}
    assert probabilities.shape == (3, 2)
    assert names == [model.classes[i] for i in probabilities.argmax(1).tolist()]
    single = model.predict(paths[0])
    assert single == names[0]

    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)

    def no_download(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not fetch pretrained weights")

    monkeypatch.setattr(torch.hub, "urlopen", no_download)
    loaded = ImageClassifier.load_from_checkpoint(checkpoint)
    assert loaded.classes == ["ants", "bees"] and loaded.hparams.image_size == SIZE
    loaded_names, loaded_probabilities = loaded.predict(paths, return_probabilities=True)
    assert loaded_names == names
    assert torch.allclose(loaded_probabilities, probabilities, atol=1e-6)


def test_predict_is_deterministic_and_matches_the_eval_pipeline(tiny_data, tmp_path: Path):
    model = ImageClassifier("resnet18", pretrained=False, classes=["ants", "bees"], image_size=SIZE)
    model.train()  # predict must switch dropout/batch-norm to eval itself, then restore the mode
    paths = tiny_data.predict_dataset.paths
    _, first = model.predict(paths, return_probabilities=True)
    _, second = model.predict(paths, return_probabilities=True)
    assert model.training
    assert torch.equal(first, second)
    (via_trainer,) = _trainer(tmp_path).predict(model, datamodule=tiny_data)
    assert torch.allclose(first, via_trainer, atol=1e-6)


def test_predict_without_class_names_returns_indices_and_rejects_bad_paths(tmp_path: Path, image_tree: Path):
    model = ImageClassifier("resnet18", pretrained=False, image_size=SIZE)
    label = model.predict(next(image_tree.glob("ants/*")))
    assert label in (0, 1)
    with pytest.raises(FileNotFoundError, match="no such image file"):
        model.predict([tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match="path_or_paths is empty"):
        model.predict([])


def test_datamodule_with_other_number_of_classes_is_an_error(tmp_path: Path):
    train = make_tree(tmp_path / "t", {c: [(f"{c}.png", "RGB")] for c in ("a", "b", "c")})
    dm = ImageClassificationData.from_folders(train_folder=train, image_size=SIZE)
    with pytest.raises(ValueError, match=r"3 classes \['a', 'b', 'c'\] but the model has num_classes=2"):
        _trainer(tmp_path).fit(ImageClassifier("resnet18", pretrained=False), datamodule=dm)


def test_register_backbone_makes_a_new_name_available(monkeypatch):
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))  # keep the global registry clean

    class Tiny(nn.Module):
        def __init__(self, weights=None):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.features(x))

    register_backbone("tiny_test_net", Tiny, 4, "fc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ImageClassifier("tiny_test_net", pretrained=False, num_classes=3)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)
    assert "tiny_test_net" in available_backbones()
