"""The skorch net that trains ISTNs adversarially: alternating ISTN and discriminator steps."""

from __future__ import annotations

import torch
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring
from torch import nn
from torch.utils.data import Dataset

from ._augment import get_augmentation
from ._content_losses import build_content_losses
from ._regularisers import build_regularisers
from ._weight_averaging import WeightAverages

LOSS_TERMS = ("gan_loss", "idt_loss", "cyc_loss", "content_loss", "joint_loss", "dis_loss",
              "task_loss")


class PairedDomains(Dataset):
    """Source and target images side by side: item ``i`` is ``(source[i % ns], target[i % nt])``.

    Its length is the larger domain's, so every image of both domains is seen
    once per epoch; shuffling the indices changes which images share a batch.
    With ``source_targets`` (the simultaneous scheme), items are
    ``(source, target, source_target)``. With ``source_sites`` (several source
    sites: site indices), the source image's site index ends every item; the
    target image of the item is mapped by that site's ISTN in the identity term.
    """

    def __init__(self, source: torch.Tensor, target: torch.Tensor,
                 source_targets: torch.Tensor | None = None,
                 source_sites: torch.Tensor | None = None) -> None:
        self.source = source
        self.target = target
        self.source_targets = source_targets
        self.source_sites = source_sites

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        i, j = index % len(self.source), index % len(self.target)
        if self.source_sites is not None:
            extra = () if self.source_targets is None else (self.source_targets[i],)
            return self.source[i], self.target[j], *extra, self.source_sites[i]
        if self.source_targets is None:
            return self.source[i], self.target[j]
        return self.source[i], self.target[j], self.source_targets[i]


class GANLosses(nn.Module):
    """The three loss functions of adversarial ISTN training.

    Parameters
    ----------
    gan : callable
        Adversarial term of the ISTN: ``gan(D(S2T), 1)``.
    dis : callable
        Discriminator terms: ``dis(D(S2T), 0)`` and ``dis(D(T), 1)``.
    idt : callable
        Identity and cycle terms on images rescaled to [0, 1].
    """

    def __init__(self, gan, dis, idt) -> None:
        super().__init__()
        self.gan = gan
        self.dis = dis
        self.idt = idt


def soft_labels(like: torch.Tensor, value: int) -> torch.Tensor:
    """Soft domain labels: 0 -> U[0, 0.03], 1 -> U[0.97, 1]."""
    noise = torch.rand_like(like) * 0.03
    return noise if value == 0 else 1.0 - noise


def _scores_for(loss, logits: torch.Tensor) -> torch.Tensor:
    """What an adversarial loss is given: logits if it ``takes_logits``, else probabilities."""
    return logits if getattr(loss, "takes_logits", False) else torch.sigmoid(logits)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Map images from [-1, 1] to [0, 1], where every registered loss applies."""
    return (images + 1.0) / 2.0


def _call(network: nn.Module, images: torch.Tensor, sites: torch.Tensor | None,
          method: str = "__call__") -> torch.Tensor:
    """``network.<method>(images)``, with site indices for a network that ``takes_sites``."""
    call = getattr(network, method)
    if sites is not None and getattr(network, "takes_sites", False):
        return call(images, sites)
    return call(images)


class AdversarialISTNNet(NeuralNet):
    """skorch net owning the alternating GAN step of ISTN training.

    ``module`` is a ``ModuleDict`` with the ISTN ``"s2t"`` (and ``"t2s"`` in
    cyclegan mode); ``discriminator`` a ``ModuleDict`` with ``"target"`` (and
    ``"source"``). Following skorch's convention for extra components,
    ``initialize_module`` creates ``discriminator_`` and
    ``initialize_optimizer`` creates ``optimizer_discriminator_``; both
    optimizers are Adam with ``betas``. Fit it on a :class:`PairedDomains`.

    Parameters
    ----------
    module : nn.ModuleDict
        The ISTN(s).
    discriminator : nn.ModuleDict
        The discriminator(s), returning logits.
    criterion : GANLosses
        The loss functions.
    consistency_weight : float
        λ: weight of the identity (½λ) and cycle (λ) terms.
    identity_on : {"itn", "istn"}, default="istn"
        What the identity term keeps unchanged on the other domain's images:
        the ITN's output (appearance) or the whole ISTN's.
    dis_lr : float, optional
        Learning rate of the discriminator optimizer (``lr`` when None).
    betas : tuple of float
        Adam's betas for both optimizers.
    memory_format : torch.memory_format, default=torch.contiguous_format
        Layout of the ISTN and discriminator weights and of the training
        batches; ``channels_last`` (2D) or ``channels_last_3d`` (3D) runs the
        convolutions faster on CPU (see examples/perf_training_step.py).
    task_net : TaskClassifier or TaskRegressor, optional
        An initialised task estimator trained on each batch's S2T with the
        source labels (the simultaneous scheme); its module is updated in
        place by its own optimizer.
    task_weight : float, default=0.0
        With ``task_net``, the weight of the task loss on S2T (not detached)
        in the ISTN's objective: the joint, task-driven scheme. 0 leaves the
        ISTN purely adversarial.
    ema_decay : float, optional
        Keep exponential moving averages of the ISTN (and task-model) weights
        with this per-step decay in ``averages_``
        (:class:`~istn_sk._weight_averaging.WeightAverages`);
        :meth:`use_averages` loads them into the networks after training.
    augmentation : str, optional
        Registered augmentation policy applied to the source and the target
        images of every training batch (``augment_``).
    dis_augmentation : str, optional
        Registered policy applied to every discriminator input, fakes and
        reals, in both steps (DiffAugment; ``dis_augment_``).
    dis_regularisers : dict of str to float, optional
        Registered discriminator regularisers and their weights
        (``regularisers_``), added to the discriminator's loss.
    content_losses : dict of str to float, optional
        Registered content losses and their weights, built per direction whose
        ISTN has an ITN (``content_``, a ``ModuleDict`` of ``ModuleList``) and
        trained with the ISTN's optimizer; each compares the ITN encoder's
        features of the input images with those of the ITN's outputs.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the training step's forward passes: ``"bfloat16"`` runs
        them under :func:`torch.autocast` (convolutions and matrix products in
        bfloat16; weights, optimizer states, losses and backward accumulation
        in float32). Inference (``transform``) is always float32.
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(self, module, discriminator, *, criterion, consistency_weight: float,
                 identity_on: str = "istn", dis_lr: float | None = None,
                 betas: tuple[float, float] = (0.5, 0.999),
                 memory_format: torch.memory_format = torch.contiguous_format, task_net=None,
                 task_weight: float = 0.0, ema_decay: float | None = None,
                 augmentation: str | None = None, dis_augmentation: str | None = None,
                 dis_regularisers: dict[str, float] | None = None,
                 content_losses: dict[str, float] | None = None,
                 precision: str = "float32", **kwargs) -> None:
        self.discriminator = discriminator
        self.consistency_weight = consistency_weight
        self.identity_on = identity_on
        self.dis_lr = dis_lr
        self.betas = betas
        self.memory_format = memory_format
        self.task_net = task_net
        self.task_weight = task_weight
        self.ema_decay = ema_decay
        self.augmentation = augmentation
        self.dis_augmentation = dis_augmentation
        self.dis_regularisers = dis_regularisers
        self.content_losses = content_losses
        self.precision = precision
        super().__init__(module, criterion, optimizer=torch.optim.Adam, **kwargs)

    @property
    def _default_callbacks(self):
        terms = [(name, PassthroughScoring(name=name, on_train=True)) for name in LOSS_TERMS]
        return super()._default_callbacks[:-1] + terms + super()._default_callbacks[-1:]

    def initialize_module(self):
        """Create ``module_`` and ``discriminator_`` in ``memory_format``."""
        super().initialize_module()
        self.module_ = self.module_.to(memory_format=self.memory_format)
        self.discriminator_ = self.initialized_instance(
            self.discriminator, self.get_params_for("discriminator")
        ).to(memory_format=self.memory_format)
        self.averages_ = (None if self.ema_decay is None
                          else WeightAverages(self._averaged(), self.ema_decay))
        self.augment_ = get_augmentation(self.augmentation)
        self.dis_augment_ = get_augmentation(self.dis_augmentation, "dis_augmentation")
        self.regularisers_ = build_regularisers(self.dis_regularisers)
        self.content_ = nn.ModuleDict({
            direction: build_content_losses(self.content_losses, istn.encoder_channels)
            for direction, istn in self.module_.items()
            if self.content_losses and getattr(istn, "encoder_channels", None) is not None
        })
        return self

    def _averaged(self) -> dict[str, nn.Module]:
        modules = {"istn": self.module_}
        if self.task_net is not None:
            modules["task"] = self.task_net.module_
        return modules

    def networks_in_use(self) -> dict[str, nn.Module]:
        """What ``transform``/``predict`` would use were training to stop now.

        The weight averages when kept, else the live networks: ``"istn"``
        (the ``ModuleDict`` of ISTNs) and, with a task model, ``"task"``.
        """
        if self.averages_ is None:
            return self._averaged()
        return {name: shadow.module for name, shadow in self.averages_.shadows.items()}

    def use_averages(self) -> None:
        """Load the weight averages (if kept) into the ISTNs and the task model."""
        if self.averages_ is not None:
            self.averages_.copy_into(self._averaged())

    def initialize_optimizer(self, *args, **kwargs):
        """Create ``optimizer_`` (ISTNs and content-loss heads) and ``optimizer_discriminator_``."""
        trained = [*self.module_.parameters(), *self.content_.parameters()]
        self.optimizer_ = self.optimizer(trained, lr=self.lr, betas=self.betas)
        dis_lr = self.lr if self.dis_lr is None else self.dis_lr
        self.optimizer_discriminator_ = self.optimizer(self.discriminator_.parameters(),
                                                       lr=dis_lr, betas=self.betas)
        return self

    def soft_labels(self, like: torch.Tensor, value: int) -> torch.Tensor:
        """The domain labels of one batch (:func:`soft_labels`); a data-parallel fit
        replaces this for the whole global batch's draw."""
        return soft_labels(like, value)

    def _seen_by_discriminator(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.dis_augment_ is None else self.dis_augment_(images)

    def _adversarial(self, discriminator: nn.Module, fake: torch.Tensor,
                     sites: torch.Tensor | None = None) -> torch.Tensor:
        score = _scores_for(self.criterion_.gan,
                            _call(discriminator, self._seen_by_discriminator(fake), sites).float())
        return self.criterion_.gan(score, self.soft_labels(score, 1))

    def _image_loss(self, output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.criterion_.idt(to_unit(output.float()), to_unit(reference.float()))

    def autocast(self) -> torch.autocast:
        """The context of the training step's forward passes (``precision``)."""
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16,
                              enabled=self.precision == "bfloat16")

    def _identity_loss(self, istn: nn.Module, images: torch.Tensor,
                       sites: torch.Tensor | None = None) -> torch.Tensor:
        """``½λ |f(images) - images|``: ``f`` the ISTN, or its ITN alone (``identity_on``)."""
        kept = _call(istn, images, sites,
                     "__call__" if self.identity_on == "istn" else "appearance")
        return 0.5 * self.consistency_weight * self._image_loss(kept, images)

    def _mapped(self, direction: str, images: torch.Tensor, sites: torch.Tensor | None,
                terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``direction``'s ISTN applied to ``images``; adds its content losses to ``terms``."""
        istn = self.module_[direction]
        if direction not in self.content_:
            return _call(istn, images, sites).float()
        parts = _call(istn, images, sites, "explain")
        with torch.no_grad():
            keys = _call(istn, images, sites, "encode")
        queries = _call(istn, parts["appearance"], sites, "encode")
        loss = sum(content(keys, queries) for content in self.content_[direction])
        terms["content_loss"] = terms.get("content_loss", 0.0) + loss
        return parts["output"].float()

    def istn_losses(self, source: torch.Tensor, target: torch.Tensor,
                    source_targets: torch.Tensor | None = None,
                    sites: torch.Tensor | None = None):
        """The ISTN's loss terms on one batch, and the fakes each discriminator judges.

        ``sites`` (several source sites): each pair's source site index; the
        pair's source and target images go through that site's ISTN.

        Returns
        -------
        terms : dict of str to tensor
            ``gan_loss``, ``idt_loss``, in cyclegan mode ``cyc_loss``, with
            ``content_losses`` ``content_loss``, and
            with a positive ``task_weight`` ``joint_loss`` (the weighted task
            loss on S2T, back-propagated into the ISTN).
        fakes : dict of str to tensor
            ``{"target": S2T}`` and, in cyclegan mode, ``{"source": T2S}``.
        """
        istn, dis, weight = self.module_, self.discriminator_, self.consistency_weight
        terms = {}
        s2t = self._mapped("s2t", source, sites, terms)
        terms["gan_loss"] = self._adversarial(dis["target"], s2t, sites)
        terms["idt_loss"] = self._identity_loss(istn["s2t"], target, sites)
        fakes = {"target": s2t}
        if self.task_net is not None and self.task_weight > 0:
            task = self.task_net
            task.module_.train()
            terms["joint_loss"] = self.task_weight * task.get_loss(
                task.module_(s2t).float(), source_targets.to(task.device), training=True)
        if "t2s" in istn:
            t2s = self._mapped("t2s", target, None, terms)
            terms["gan_loss"] = terms["gan_loss"] + self._adversarial(dis["source"], t2s)
            terms["idt_loss"] = terms["idt_loss"] + self._identity_loss(istn["t2s"], source)
            terms["cyc_loss"] = weight * (self._image_loss(istn["t2s"](s2t), source)
                                          + self._image_loss(istn["s2t"](t2s), target))
            fakes["source"] = t2s
        return terms, fakes

    def discriminator_loss(self, fakes: dict[str, torch.Tensor],
                           reals: dict[str, torch.Tensor],
                           sites: torch.Tensor | None = None) -> torch.Tensor:
        """``½[dis(D(fake), 0) + dis(D(real), 1)]``, summed over the discriminators.

        Fakes and reals go through each discriminator in one batch: it
        normalises per image (instance norm), so this is the same function
        as two passes, with half the calls. With ``sites``, a per-site
        discriminator judges each pair's fake and real with the pair's site.
        """
        loss = 0.0
        needs_gradient = any(getattr(r, "needs_real_gradient", False) for r in self.regularisers_)
        for name, fake in fakes.items():
            seen = self._seen_by_discriminator(torch.cat([fake.detach(), reals[name]]))
            real = seen[len(fake):]
            if needs_gradient:   # a gradient penalty differentiates D with respect to real
                real = real.detach().requires_grad_(True)
                seen = torch.cat([seen[:len(fake)], real])
            both = None if sites is None else torch.cat([sites, sites])
            logits = _call(self.discriminator_[name], seen, both).float()
            p_fake, p_real = _scores_for(self.criterion_.dis, logits).split([len(fake), len(real)])
            loss = loss + 0.5 * (self.criterion_.dis(p_fake, self.soft_labels(p_fake, 0))
                                 + self.criterion_.dis(p_real, self.soft_labels(p_real, 1)))
            logits_fake, logits_real = logits.split([len(fake), len(real)])
            for penalty in self.regularisers_:
                loss = loss + penalty(real, logits_real, logits_fake)
        return loss

    def task_step(self, s2t: torch.Tensor, source_targets: torch.Tensor) -> torch.Tensor:
        """One update of the task model on S2T (detached) with the source labels."""
        task = self.task_net
        task.module_.train()
        with self.autocast():
            prediction = task.module_(s2t.detach()).float()
        loss = task.get_loss(prediction, source_targets.to(task.device), training=True)
        task.optimizer_.zero_grad()
        loss.backward()
        task.optimizer_.step()
        return loss

    def train_step(self, batch, **fit_params):
        """One ISTN update, one discriminator update and, if any, one task update."""
        self._set_training(True)
        sites = None
        if getattr(self.module_["s2t"], "takes_sites", False):
            batch, sites = batch[:-1], batch[-1].to(self.device)
        source, target = (part.to(self.device).contiguous(memory_format=self.memory_format)
                          for part in batch[:2])
        if self.augment_ is not None:
            source, target = self.augment_(source), self.augment_(target)

        self.discriminator_.requires_grad_(False)
        with self.autocast():
            terms, fakes = self.istn_losses(source, target,
                                            batch[2] if len(batch) > 2 else None, sites)
        istn_loss = sum(terms.values())
        self.optimizer_.zero_grad()
        istn_loss.backward()
        self.optimizer_.step()
        self.discriminator_.requires_grad_(True)

        with self.autocast():
            dis_loss = self.discriminator_loss(fakes, {"target": target, "source": source},
                                               sites)
        self.optimizer_discriminator_.zero_grad()
        dis_loss.backward()
        self.optimizer_discriminator_.step()

        terms["dis_loss"] = dis_loss
        if self.task_net is not None:
            terms["task_loss"] = self.task_step(fakes["target"], batch[2])
        if self.averages_ is not None:
            self.averages_.update(self._averaged())
        for name in LOSS_TERMS:
            if name in terms:
                self.history.record_batch(name, terms[name].item())
        return {"loss": istn_loss.detach(), "y_pred": fakes["target"].detach()}
