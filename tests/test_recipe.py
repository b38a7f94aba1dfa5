"""The baseline recipe is CAL's (docs/recipe.md): the resolved 212 on PRCC item by item, and one
training step against an independent implementation written here from CAL's facts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ccreid.core.config import Params, load_params
from ccreid.data.prepared import load_prepared
from ccreid.engine.trainer import Trainer
from helpers import REPO, tiny_params

# CAL's values for res50_cels_cal.yaml on PRCC (configs/default_img.py unless named), by the
# dotted key of ccreid's resolved config. Facts from guxinqian/Simple-CCReID, not from ccreid.
CAL_212_ON_PRCC = {
    "model.backbone": "resnet50",  # MODEL.NAME
    "model.pretrained": "imagenet",  # models/img_resnet.py: torchvision resnet50(pretrained=True)
    "model.last_stride": 1,  # MODEL.RES4_STRIDE
    "model.pooling": "maxavg",  # MODEL.POOLING.NAME
    "model.width": 1.0,
    "model.neck_bias": True,  # img_resnet.py: BatchNorm1d, bias initialised to 0 and trained
    "model.classifier_bias": True,  # models/classifier.py: nn.Linear with bias
    "model.multiscale.enabled": False,
    "model.correction": False,
    "loss.id.label_smoothing": 0.1,  # CLA_LOSS crossentropylabelsmooth, epsilon 0.1
    "loss.clothes.enabled": True,
    "loss.clothes.start_epoch": 25,  # TRAIN.START_EPOCH_CC
    "loss.clothes.scale": 16.0,  # LOSS.CLA_S (CosFace margin 0 on the NormalizedClassifier)
    "loss.clothes.label_smoothing": 0.0,
    "loss.clothes.lr": 3.5e-4,  # main.py: optimizer_cc, lr TRAIN.OPTIMIZER.LR
    "loss.clothes.weight_decay": 5e-4,
    "loss.clothes.lr_schedule": "constant",  # main.py: the scheduler steps `optimizer` only
    "loss.adversarial.enabled": True,  # LOSS.CAL 'cal', from TRAIN.START_EPOCH_ADV = 25
    "loss.adversarial.epsilon": 0.1,  # LOSS.EPSILON
    "loss.adversarial.weight": 1.0,  # train.py: loss = cla_loss + adv_loss
    "loss.triplet.enabled": False,  # LOSS.PAIR_LOSS_WEIGHT 0.0: no pair loss
    "loss.triplet.margin": 0.3,  # LOSS.PAIR_M
    "loss.aux.enabled": False,
    "loss.distill.enabled": False,
    "train.seed": 1,  # SEED
    "train.epochs": 60,  # TRAIN.MAX_EPOCH
    "train.lr": 3.5e-4,  # TRAIN.OPTIMIZER.LR (adam)
    "train.weight_decay": 5e-4,  # TRAIN.OPTIMIZER.WEIGHT_DECAY, torch Adam (coupled)
    "train.milestones": [20, 40],  # TRAIN.LR_SCHEDULER.STEPSIZE
    "train.gamma": 0.1,  # DECAY_RATE
    "train.warmup_epochs": 0,
    "train.ids_per_batch": 8,  # 2 GPUs x TRAIN_BATCH 32 / NUM_INSTANCES 8
    "train.images_per_id": 8,  # DATA.NUM_INSTANCES
    "train.bn_batch": 32,  # DATA.TRAIN_BATCH per GPU, no SyncBN
    "train.amp": "off",  # TRAIN.AMP False (script.sh: no --amp for PRCC)
    "augment.flip": 0.5,  # AUG.RF_PROB
    "augment.crop.p": 0.5,  # AUG.RC_PROB
    "augment.crop.scale": 1.125,  # data/img_transforms.py RandomCroping
    "augment.crop.interpolation": "bilinear",  # RandomCroping: Image.BILINEAR
    "augment.erasing.p": 0.5,  # AUG.RE_PROB
    "augment.erasing.area": [0.02, 0.4],  # RandomErasing sl, sh
    "augment.erasing.aspect": [0.3, 1 / 0.3],  # r1, 1/r1
    "augment.erasing.sampling": "cal",  # up to 100 tries of a box that fits
    "augment.erasing.fill": [0.4914, 0.4822, 0.4465],  # RandomErasing mean
    "augment.extra": [],  # no augmentation CAL does not make
    "eval.distance": "cosine",  # test.py: F.normalize(f + f_flip), tools/eval_metrics on cosine
    "eval.flip": True,
    "eval.rerank": False,
    "eval.amp": "off",
    "eval.batch_size": 128,  # DATA.TEST_BATCH
    "dataset.size": [384, 192],  # DATA.HEIGHT, DATA.WIDTH
}


def dotted(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("dataset", ["prcc", "ltcc"])
def test_resolved_baseline_on_real_data_is_cals_recipe(dataset):
    resolved = load_params(REPO / "params.yaml").run_config(dataset, "212").model_dump(mode="json")
    different = {
        key: (dotted(resolved, key), cal) for key, cal in CAL_212_ON_PRCC.items() if dotted(resolved, key) != cal
    }
    assert not different, different


# ------------------------------------------------------------------ one step, independently
def cal_recipe_params() -> dict:
    """A tiny synthetic set trained with CAL's numbers: the demo's overrides replaced by the
    narrow from-scratch network alone, the unscaled 60-epoch schedule, augmentation off (the
    reference below gets the same normalised batch)."""
    params = tiny_params(images_per_camera=4, height=64, width=32)
    synthetic = params["datasets"]["synthetic"]
    synthetic.update(size=[64, 32], schedule_scale=1.0, overrides={"model": {"width": 0.125, "pretrained": "none"}})
    defaults = params["defaults"]
    defaults["train"].update(ids_per_batch=4, images_per_id=4)
    defaults["augment"].update(
        flip=0.0, crop={**defaults["augment"]["crop"], "p": 0.0}, erasing={**defaults["augment"]["erasing"], "p": 0.0}
    )
    return params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_project):
    root = synthetic_project(tmp_path_factory.mktemp("recipe") / "project", cal_recipe_params())
    return root / "data/prepared/synthetic"


class HandAdam:
    """torch.optim.Adam's update written out: coupled L2 weight decay (g + wd·p), bias-corrected
    moments, p -= lr · m̂ / (√v̂ + eps)."""

    def __init__(self, params: list[torch.Tensor], weight_decay: float, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.weight_decay, self.betas, self.eps = params, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = g + self.weight_decay * p
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            m_hat, v_hat = m / (1 - b1**self.t), v / (1 - b2**self.t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))


def label_smoothed_ce(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """CAL's CrossEntropyWithLabelSmooth: targets (1 - ε)·one_hot + ε/K, mean over the batch."""
    smoothed = (1 - epsilon) * F.one_hot(targets, logits.shape[1]) + epsilon / logits.shape[1]
    return (-smoothed * F.log_softmax(logits, dim=1)).sum(1).mean()


def cosine_logits(features: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """NormalizedClassifier (cosines), scaled as CosFaceLoss with margin 0 and CAL's loss do."""
    return scale * F.normalize(features, dim=1) @ F.normalize(weight, dim=1).t()


def cal_adversarial(logits: torch.Tensor, clothes: torch.Tensor, positive: torch.Tensor, epsilon: float):
    """CAL's ClothesBasedAdversarialLoss on already scaled logits, in its own exp/log form."""
    exp = torch.exp(logits)
    log_prob = logits - torch.log((exp * (1 - positive)).sum(1, keepdim=True) + exp)
    mask = (1 - epsilon) * F.one_hot(clothes, logits.shape[1]) + epsilon / positive.sum(1, keepdim=True) * positive
    return (-mask * log_prob).sum(1).mean()


@pytest.fixture
def float64():
    """Both sides in float64: a weight whose gradient cancels to ~0 gets Adam's first update
    lr·sign(g), so float32 rounding alone would flip a few elements by 2·lr."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_training_steps_equal_an_independent_cal_implementation(prepared, float64):
    cfg = Params(cal_recipe_params()).run_config("synthetic", "212")
    trainer = Trainer(load_prepared(prepared), cfg, torch.device("cpu"))
    reference = copy.deepcopy(trainer.model).train()
    names = [name for name, _ in reference.named_parameters()]
    params = dict(reference.named_parameters())
    # CAL's head: BatchNorm1d neck with its bias trained, identity Linear with a bias.
    assert params["neck.bias"].requires_grad and "classifier.bias" in params
    main = [params[n] for n in names if not n.startswith("clothes_classifier.")]
    clothes_weight = params["clothes_classifier.weight"]
    main_adam = HandAdam(main, weight_decay=5e-4)
    clothes_adam = HandAdam([clothes_weight], weight_decay=5e-4)
    lcfg = cfg.loss
    rows = trainer.sampler.epoch(0)[0]
    images = trainer.images.read(rows)
    batch = (images.double() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    pids, clothes = trainer.labels[rows], trainer.clothes[rows]
    positive = trainer.positive_mask[pids]
    # Epoch 30: main lr 3.5e-5 after milestone 20; epoch 45: 3.5e-6 after 40. The clothes
    # classifier keeps 3.5e-4 in both (CAL's optimizer_cc has no scheduler).
    for epoch, main_lr in ((30, 3.5e-5), (45, 3.5e-6)):
        assert math.isclose(trainer.set_lr(epoch), main_lr)
        logged = trainer.step(rows, images, epoch)

        out = reference(batch)
        id_loss = label_smoothed_ce(out["logits"], pids, lcfg.id.label_smoothing)
        clothes_loss = F.cross_entropy(cosine_logits(out["features"].detach(), clothes_weight, 16.0), clothes)
        clothes_adam.step(torch.autograd.grad(clothes_loss, [clothes_weight]), lr=3.5e-4)
        adversarial = cal_adversarial(
            cosine_logits(out["features"], clothes_weight.detach(), 16.0),
            clothes,
            positive,
            lcfg.adversarial.epsilon,
        )
        total = id_loss + adversarial
        main_adam.step(torch.autograd.grad(total, main), lr=main_lr)

        expected = {"id": id_loss, "adversarial": adversarial, "total": total, "clothes_classifier": clothes_loss}
        for key, value in expected.items():
            assert math.isclose(logged[key], value.item(), rel_tol=1e-5, abs_tol=1e-8), (epoch, key)
        ours = trainer.model.state_dict()
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-8, msg=f"epoch {epoch}: {key}")
