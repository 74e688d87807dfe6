"""Many source sites to one target: fitting, and mapping each row by its site.

``ISTNAdapter.fit`` hands a fit with more than one source site (distinct
``sample_domain > 0`` values) to :func:`fit_many_sites`; with one source site
it keeps its own code path, unchanged. ``multi_source`` chooses the networks:

``"conditioned"``
    One ISTN shared by the sites, told each image's site by a learned site
    embedding (FiLM in the ITN's bottleneck and decoder and before the STN's
    head, :class:`~istn_sk.nn._film.SiteConditionedISTN`), and one
    discriminator of the target.
``"independent"``
    One ISTN and one target discriminator per site
    (:class:`~istn_sk.nn._film.PerSiteNetworks`), trained in the same loop:
    each batch pairs source rows of any site with target rows, and every pair
    goes through its source site's ISTN and discriminator only. A site's ISTN
    sees each of its images ``max_epochs`` times, as a two-site ISTN fitted on
    that site alone for ``max_epochs`` would.

In both, the identity term maps each pair's target image by the pair's site,
and a task model trained alongside (``task=``) learns on the pooled mapped
sources. Not built for several source sites: ``mode="cyclegan"`` and
``select_epoch``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._adversarial_net import PairedDomains
from ._alongside import task_to_train_alongside
from ._checkpoint import checkpointing, restore, resumable
from ._networks import build_training_net
from ._validation import SOURCE_DOMAIN

MULTI_SOURCE = ("conditioned", "independent")


def source_sites(adapter, sample_domain, is_source: np.ndarray) -> np.ndarray:
    """The sorted source site ids of a fit (``[1]`` when only masked labels tell the domains).

    Also checks ``adapter.multi_source``.

    Raises
    ------
    ValueError
        If ``multi_source`` is not one of :data:`MULTI_SOURCE`.
    """
    if adapter.multi_source not in MULTI_SOURCE:
        raise ValueError(f"multi_source must be one of {MULTI_SOURCE}, got "
                         f"{adapter.multi_source!r}")
    if sample_domain is None:
        return np.array([SOURCE_DOMAIN])
    return np.unique(np.asarray(sample_domain).ravel()[is_source])


def _check_many_sites(adapter, sites: np.ndarray) -> None:
    if adapter.mode == "cyclegan":
        raise ValueError(f"mode='cyclegan' is not built for several source sites (got "
                         f"{sites.tolist()}): use mode='unidirectional' or fit one site")
    if adapter.select_epoch is not None:
        raise ValueError(f"select_epoch is not built for several source sites (got "
                         f"{sites.tolist()}): leave it None or fit one site")


def fit_many_sites(adapter, X, y, layout, array: np.ndarray, is_source: np.ndarray,
                   sites: np.ndarray, sample_domain):
    """Fit ``adapter`` on several source sites and one target; ``ISTNAdapter.fit``'s tail.

    Parameters
    ----------
    adapter : ISTNAdapter
    X : ndarray
        The validated rows (the task model reads the source ones).
    y : array-like or None
    layout : ImageLayout
    array : ndarray of float32, shape (n, C, *spatial)
        The images.
    is_source : ndarray of bool
    sites : ndarray
        Sorted source site ids (more than one).
    sample_domain : array-like of shape (n,)

    Returns
    -------
    ISTNAdapter
        ``adapter``, fitted; ``source_sites_`` is ``sites``.
    """
    _check_many_sites(adapter, sites)
    domains = np.asarray(sample_domain).ravel()
    index = np.searchsorted(sites, domains[is_source]).astype(np.int64)
    codes = np.zeros(len(domains), dtype=np.int64)
    codes[is_source] = index + 1
    checkpoint, extra_callbacks = checkpointing(adapter, array, is_source, y, domains=codes)
    images = torch.from_numpy(array)
    source = images[torch.from_numpy(is_source)]
    site = torch.from_numpy(index)
    seed = int(check_random_state(adapter.random_state).randint(np.iinfo(np.int32).max))
    with torch.random.fork_rng(devices=[]), resumable(extra_callbacks, checkpoint):
        torch.manual_seed(seed)
        task, source_targets = task_to_train_alongside(adapter, X[is_source], y, is_source)
        net = build_training_net(adapter, layout, task,
                                 [*adapter._training_callbacks(), *extra_callbacks],
                                 n_sites=len(sites))
        data = PairedDomains(source, images[torch.from_numpy(~is_source)], source_targets, site)
        if checkpoint is None:
            net.fit(data)
        else:
            net.initialize()
            restore(net, checkpoint)
            if adapter.max_epochs > checkpoint["epoch"]:
                net.partial_fit(data, epochs=adapter.max_epochs - checkpoint["epoch"])
        net.use_averages()
        recompute_site_batch_norm(net.module_["s2t"], source, site, adapter.batch_size,
                                  net.memory_format)
    adapter.net_, adapter.best_epoch_, adapter.task_ = net, None, task
    adapter.history_ = net.history
    adapter.n_channels_, adapter.image_shape_ = layout.channels, layout.spatial
    adapter.source_sites_ = sites
    return adapter


def recompute_site_batch_norm(module: torch.nn.Module, images: torch.Tensor,
                              site: torch.Tensor, batch_size: int,
                              memory_format: torch.memory_format = torch.contiguous_format
                              ) -> None:
    """:func:`~istn_sk._batch_norm.recompute_batch_norm` for a network that ``takes_sites``.

    A :class:`~istn_sk.nn._film.PerSiteNetworks` gets each site's statistics
    from that site's images alone (a two-site fit's statistics); a
    conditioned ISTN, shared by the sites, from all source images with their
    sites. The batch statistics are averaged with equal weight
    (``momentum=None``), as ``torch.optim.swa_utils.update_bn`` does.

    Parameters
    ----------
    module : nn.Module
        Takes ``(images, site)``; left in eval mode.
    images : tensor of shape (n, C, *spatial)
    site : tensor of shape (n,)
        Site indices.
    batch_size : int
    memory_format : torch.memory_format
    """
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = {}
    for layer in norms:
        layer.reset_running_stats()
        momenta[layer] = layer.momentum
        layer.momentum = None
    device = next(module.parameters()).device
    groups = ([(network, images[site == k]) for k, network in enumerate(module.sites)]
              if hasattr(module, "sites") else [(module, images)])
    module.train()
    with torch.no_grad():
        for network, part in groups:
            for start in range(0, len(part), batch_size):
                batch = part[start:start + batch_size].to(device)
                batch = batch.contiguous(memory_format=memory_format)
                if network is module:
                    network(batch, site[start:start + batch_size].to(device))
                else:
                    network(batch)
    for layer in norms:
        layer.momentum = momenta[layer]
    module.eval()


def site_indices(adapter, sample_domain, n_rows: int, *, sources_only: bool) -> np.ndarray:
    """Each row's index into ``adapter.source_sites_`` (0 for target rows).

    Raises
    ------
    ValueError
        Without ``sample_domain``, with one of the wrong length or holding
        zeros or non-numbers, with a source site never seen in ``fit``
        (named with the known sites), or with target rows when
        ``sources_only`` (``explain``).
    """
    known = adapter.source_sites_.tolist()
    if sample_domain is None:
        raise ValueError(f"this ISTNAdapter was fitted on the source sites {known}: pass "
                         "sample_domain (each row's site id; < 0 for target rows) to map "
                         "each row by its site")
    domains = np.asarray(sample_domain).ravel()
    if domains.shape[0] != n_rows:
        raise ValueError(f"sample_domain has {domains.shape[0]} entries but X has {n_rows} rows")
    if not np.issubdtype(domains.dtype, np.number) or np.any(domains == 0) \
            or not np.all(np.isfinite(domains)):
        raise ValueError("sample_domain must hold non-zero numbers: a source site id (> 0) or "
                         "< 0 for target rows")
    sources = domains > 0
    unseen = sorted(set(domains[sources].tolist()) - set(known))
    if unseen:
        raise ValueError(f"sample_domain holds the source site(s) {unseen}, never seen in fit; "
                         f"this ISTNAdapter knows the source sites {known}")
    if sources_only and not sources.all():
        raise ValueError("explain maps source rows by their site; target rows (sample_domain "
                         "< 0) have no site of this adapter")
    index = np.zeros(n_rows, dtype=np.int64)
    index[sources] = np.searchsorted(adapter.source_sites_, domains[sources])
    return index


def mapped_batches(adapter, istn: torch.nn.Module, images: np.ndarray, sample_domain=None,
                   *, explain: bool = False):
    """Yield ``(batch, istn(batch))`` (or ``istn.explain``) over ``images``, without gradients.

    A network that ``takes_sites`` is given each row's site index
    (:func:`site_indices`); any other is called on the images alone, as an
    adapter fitted on one source site always was.
    """
    if not getattr(istn, "takes_sites", False):
        for batch in adapter._batches(images):
            yield batch, (istn.explain(batch) if explain else istn(batch))
        return
    index = torch.from_numpy(site_indices(adapter, sample_domain, images.shape[0],
                                          sources_only=explain))
    with torch.no_grad():
        for start in range(0, images.shape[0], adapter.batch_size):
            batch = torch.from_numpy(images[start:start + adapter.batch_size]).to(adapter.device)
            site = index[start:start + adapter.batch_size].to(adapter.device)
            yield batch, (istn.explain(batch, site) if explain else istn(batch, site))
