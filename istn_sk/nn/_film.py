"""Networks for many source sites: FiLM site conditioning, and one network per site.

:class:`SiteConditionedISTN` is one ISTN shared by every source site, told
the site of each image by a learned site embedding that feature-wise linear
modulation (FiLM: a per-channel scale and shift, Perez et al. 2018) applies
to the ITN's bottleneck and decoder maps and to the STN's features before
its head. :class:`PerSiteNetworks` holds one independent network per site
(ISTNs or discriminators) and sends each row to its site's network. Both
take ``(images, site)`` with ``site`` a ``(n,)`` tensor of site indices
``0 .. n_sites - 1``, and say so with ``takes_sites = True``.
"""

from __future__ import annotations

import torch
from torch import nn

#: Length of the learned site embedding of :class:`SiteConditionedISTN`.
EMBEDDING_DIM = 8


def apply_film(h: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``h * (1 + scale) + shift``, with ``(n, C)`` scale and shift broadcast over space.

    Parameters
    ----------
    h : tensor of shape (n, C, *spatial) or (n, C)
    film : pair of tensors of shape (n, C)

    Returns
    -------
    tensor, the shape of ``h``
    """
    scale, shift = film
    shape = (*scale.shape, *([1] * (h.dim() - 2)))
    return h * (1.0 + scale.view(shape)) + shift.view(shape)


class FiLM(nn.Module):
    """A zero-initialised linear map from a site embedding to a ``(scale, shift)`` pair.

    Zero weights make a fresh conditioning the identity (scale 0, shift 0),
    as the ITN and the STNs are at initialisation.

    Parameters
    ----------
    embedding_dim : int
        Length of the embedding.
    channels : int
        Channels of the modulated map.
    """

    def __init__(self, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)``, each ``(n, channels)``."""
        scale, shift = self.linear(embedding).chunk(2, dim=1)
        return scale, shift


class SiteConditionedISTN(nn.Module):
    """One ISTN for every source site, conditioned on the site by FiLM.

    Parameters
    ----------
    istn : ISTN
        Its ITN (if any) must expose ``film_channels`` and take ``forward(x,
        film)`` (:class:`~istn_sk.nn.ImageTransformerNetwork`), and so must
        its STN (if any; :class:`~istn_sk.nn.AffineSTN`,
        :class:`~istn_sk.nn.BSplineSTN`).
    n_sites : int
        Number of source sites.
    embedding_dim : int, default=EMBEDDING_DIM
        Length of the learned site embedding.

    Raises
    ------
    ValueError
        If the ITN or STN cannot be conditioned.
    """

    takes_sites = True

    def __init__(self, istn: nn.Module, n_sites: int, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        for part in ("itn", "stn"):
            network = getattr(istn, part)
            if network is not None and not hasattr(network, "film_channels"):
                raise ValueError(
                    f"the {part.upper()} {type(network).__name__} cannot be conditioned on the "
                    "source site (it has no film_channels); use multi_source='independent'")
        self.istn = istn
        self.embedding = nn.Embedding(n_sites, embedding_dim)
        channels = istn.itn.film_channels if istn.itn is not None else ()
        self.itn_film = nn.ModuleList(FiLM(embedding_dim, c) for c in channels)
        self.stn_film = (None if istn.stn is None
                         else FiLM(embedding_dim, istn.stn.film_channels))

    @property
    def n_sites(self) -> int:
        """Number of source sites."""
        return self.embedding.num_embeddings

    def forward(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """Images ``x`` mapped by the ISTN of their ``site`` (indices)."""
        return self.explain(x, site)["output"]

    def _film(self, x: torch.Tensor, site: torch.Tensor) -> dict:
        embedding = self.embedding(site.to(x.device).long())
        return {"itn": [film(embedding) for film in self.itn_film] or None,
                "stn": None if self.stn_film is None else self.stn_film(embedding)}

    @property
    def encoder_channels(self) -> tuple[int, ...] | None:
        """Channels of :meth:`encode`'s maps, as :attr:`~istn_sk.nn.ISTN.encoder_channels`."""
        return self.istn.encoder_channels

    def encode(self, x: torch.Tensor, site: torch.Tensor) -> list[torch.Tensor]:
        """The ITN encoder's feature maps; the encoder is shared by every site (no FiLM)."""
        return self.istn.encode(x)

    def appearance(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """The ITN's output for the rows' sites, as :meth:`~istn_sk.nn.ISTN.appearance`."""
        return self.istn.appearance(x, self._film(x, site))

    def explain(self, x: torch.Tensor, site: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Every stage of the transform, as :meth:`~istn_sk.nn.ISTN.explain`."""
        return self.istn.explain(x, self._film(x, site))


class PerSiteNetworks(nn.Module):
    """One independent network per source site; each row goes to its site's network.

    Parameters
    ----------
    networks : sequence of nn.Module
        Network ``k`` serves site index ``k``: ISTNs (with ``explain``) or
        discriminators (returning ``(n, ...)`` scores).
    """

    takes_sites = True

    def __init__(self, networks) -> None:
        super().__init__()
        self.sites = nn.ModuleList(networks)

    @property
    def n_sites(self) -> int:
        """Number of source sites."""
        return len(self.sites)

    def _dispatch(self, x: torch.Tensor, site: torch.Tensor, call):
        site = site.to(x.device).long()
        rows, parts = [], []
        for index, network in enumerate(self.sites):
            mine = torch.nonzero(site == index).flatten()
            if len(mine):   # a site absent from the batch gets no graph, so no gradient
                rows.append(mine)
                parts.append(call(network, x[mine]))
        order = torch.argsort(torch.cat(rows))
        if isinstance(parts[0], list):
            return [torch.cat(level)[order] for level in zip(*parts, strict=True)]
        if isinstance(parts[0], dict):
            return {key: None if parts[0][key] is None
                    else torch.cat([part[key] for part in parts])[order] for key in parts[0]}
        return torch.cat(parts)[order]

    def forward(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """Each row of ``x`` through the network of its ``site`` (indices), in row order."""
        return self._dispatch(x, site, lambda network, rows: network(rows))

    @property
    def encoder_channels(self) -> tuple[int, ...] | None:
        """Channels of :meth:`encode`'s maps (the same for every site's ISTN)."""
        return self.sites[0].encoder_channels

    def encode(self, x: torch.Tensor, site: torch.Tensor) -> list[torch.Tensor]:
        """Each row's feature maps from its site's ITN encoder (:meth:`~istn_sk.nn.ISTN.encode`)."""
        return self._dispatch(x, site, lambda network, rows: network.encode(rows))

    def appearance(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """Each row's ITN output, as :meth:`~istn_sk.nn.ISTN.appearance`."""
        return self._dispatch(x, site, lambda network, rows: network.appearance(rows))

    def explain(self, x: torch.Tensor, site: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Every stage of each row's ISTN, as :meth:`~istn_sk.nn.ISTN.explain`."""
        return self._dispatch(x, site, lambda network, rows: network.explain(rows))
