"""Building the networks an ISTNAdapter trains: the ISTN(s), discriminator(s) and the skorch net."""

from __future__ import annotations

import torch
from torch import nn

from ._adapter_params import (
    discriminator_sees_coordinates,
    per_axis,
    resolved_content_losses,
    resolved_dis_augmentation,
)
from ._adversarial_net import AdversarialISTNNet, GANLosses
from ._distributed_training import prepare_net
from ._registry import get_registry
from .nn import ISTN, FullyConvolutionalNet, ImageTransformerNetwork, STNContext
from .nn._bias_field import PolynomialBiasField
from .nn._coordinates import WithCoordinates
from .nn._film import PerSiteNetworks, SiteConditionedISTN


def build_training_net(adapter, layout, task=None, callbacks=(),
                       n_sites: int = 1) -> AdversarialISTNNet:
    """The untrained skorch net: ISTN(s), discriminator(s) and losses for ``layout``.

    Parameters
    ----------
    adapter : ISTNAdapter
        Its parameters choose the networks, losses and training settings.
    layout : ImageLayout
        Channels and spatial shape of the images.
    task : TaskClassifier or TaskRegressor, optional
        An initialised task estimator to train alongside (the simultaneous scheme).
    callbacks : sequence of skorch callbacks
        Every callback of the training net.
    n_sites : int, default=1
        Source sites. With more than one, ``adapter.multi_source`` chooses one
        :class:`~istn_sk.nn._film.SiteConditionedISTN` and one discriminator
        (``"conditioned"``), or a :class:`~istn_sk.nn._film.PerSiteNetworks` of
        ISTNs and one of discriminators (``"independent"``).
    """
    registry = get_registry()
    losses = {
        name: registry.get("loss", getattr(adapter, name), parameter=name).factory()
        for name in ("gan_loss", "dis_loss", "idt_loss")
    }
    if getattr(losses["idt_loss"], "takes_logits", False):
        raise ValueError(f"idt_loss={adapter.idt_loss!r} works on logits; the identity and "
                         "cycle terms compare images: choose an image loss such as 'l1'")
    directions = ["s2t", "t2s"] if adapter.mode == "cyclegan" else ["s2t"]
    coordinates = discriminator_sees_coordinates(adapter)

    def critic():
        extra = len(layout.spatial) if coordinates else 0
        network = FullyConvolutionalNet(len(layout.spatial), layout.channels + extra,
                                        layout.spatial, n_outputs=1, nf=2 * adapter.nf,
                                        norm_kind="instance")
        return WithCoordinates(network) if coordinates else network

    if n_sites > 1 and adapter.multi_source == "independent":
        istns = nn.ModuleDict({"s2t": PerSiteNetworks(
            [build_istn(adapter, layout) for _ in range(n_sites)])})
        critics = nn.ModuleDict({"target": PerSiteNetworks([critic() for _ in range(n_sites)])})
    else:
        istns = nn.ModuleDict({key: build_istn(adapter, layout) for key in directions})
        if n_sites > 1:
            istns["s2t"] = SiteConditionedISTN(istns["s2t"], n_sites)
        critics = nn.ModuleDict({
            domain: critic()
            for domain in (["target", "source"] if adapter.mode == "cyclegan" else ["target"])
        })
    return prepare_net(AdversarialISTNNet(
        istns, critics,
        criterion=GANLosses(losses["gan_loss"], losses["dis_loss"], losses["idt_loss"]),
        consistency_weight=float(adapter.consistency_weight), identity_on=adapter.identity_on,
        memory_format=(torch.channels_last if len(layout.spatial) == 2
                       else torch.channels_last_3d),
        lr=adapter.lr, dis_lr=adapter.dis_lr,
        batch_size=adapter.batch_size, max_epochs=adapter.max_epochs, train_split=None,
        iterator_train__shuffle=True, device=adapter.device,
        callbacks=list(callbacks), verbose=int(adapter.verbose),
        task_net=task, task_weight=float(adapter.task_weight), ema_decay=adapter.ema_decay,
        augmentation=adapter.augmentation,
        dis_augmentation=resolved_dis_augmentation(adapter, len(layout.spatial)),
        dis_regularisers=adapter.dis_regularisers, content_losses=resolved_content_losses(adapter),
        precision=adapter.precision,
    ))

def build_istn(adapter, layout) -> ISTN:
    """One untrained ISTN (ITN and registered STN) for ``layout`` from ``adapter``'s parameters."""
    spatial_dims = len(layout.spatial)
    options = dict(adapter.itn_options or {})
    degree = options.pop("bias_field", 0)
    itn = (ImageTransformerNetwork(spatial_dims, layout.channels, layout.spatial, nf=adapter.nf,
                                   output=adapter.itn_output, **options)
           if adapter.itn else None)
    stn = "none" if adapter.stn is None else adapter.stn
    entry = get_registry().get("spatial_transformer", stn, parameter="stn")
    context = STNContext(
        image_shape=layout.spatial, in_channels=layout.channels, nf=adapter.nf,
        cp_spacing=per_axis(adapter.cp_spacing, spatial_dims),
        max_displacement=float(adapter.max_displacement),
        options=dict(adapter.stn_options or {}),
    )
    return ISTN(itn, entry.factory(context),
                bias_field=PolynomialBiasField(spatial_dims, degree) if degree else None)
