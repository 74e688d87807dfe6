"""Hook specifications of istn-sk.

Every spatial transformer, loss, dataset, augmentation policy, discriminator
regulariser and content loss that istn-sk knows is contributed
by a plugin through one of the hooks below; the built-in ones live in
``istn_sk.plugins`` and use exactly these hooks. A third-party distribution
becomes a plugin by declaring an entry point in the group ``istn_sk`` that
names a module (or object) carrying ``@istn_sk.hookimpl`` functions.

Each hook receives a ``register`` object whose ``add`` method records one
named factory::

    import istn_sk

    @istn_sk.hookimpl
    def istn_sk_register_spatial_transformers(register):
        register.add("rigid", make_rigid_stn, description="rotation + translation")

A name that another plugin already added is an error naming both providers.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "istn_sk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def istn_sk_register_spatial_transformers(register) -> None:
    """Add spatial transformer (STN) types.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per STN.
        ``factory(context)`` receives an :class:`istn_sk.nn.STNContext`
        (``image_shape``, ``in_channels``, ``nf``, ``cp_spacing``,
        ``max_displacement``, ``options``) and returns either ``None`` (no
        spatial transform) or a :class:`torch.nn.Module` whose ``forward(x)``
        maps images ``(n, C, *spatial)`` to a dense displacement field
        ``(n, len(spatial), *spatial)`` in voxel units, channel ``i``
        displacing along spatial axis ``i``. The module must output a zero
        field at initialisation so that a fresh ISTN is the identity; the
        field is sampled by :class:`istn_sk.nn.Warp`.
    """


@hookspec
def istn_sk_register_losses(register) -> None:
    """Add loss functions usable as ``gan_loss``, ``dis_loss`` and ``idt_loss``.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per loss.
        ``factory()`` returns a callable ``loss(input, target) -> tensor``
        giving a scalar mean. Discriminator terms call it with probabilities
        in [0, 1] and soft labels; identity and cycle terms call it with
        images rescaled from [-1, 1] to [0, 1].
    """


@hookspec
def istn_sk_register_datasets(register) -> None:
    """Add datasets that ``istn_sk.datasets.load`` and ``istn-sk datasets`` know.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per
        dataset. ``factory()`` returns an object with ``make(out_dir, **options)``
        writing the dataset to a folder and returning the path of its
        manifest, and ``load(**options)`` returning ``(X, y, sample_domain)``
        arrays ready for :class:`istn_sk.ISTNAdapter`.
    """


@hookspec
def istn_sk_add_cli_commands(cli) -> None:
    """Add sub-commands to the ``istn-sk`` command line.

    Parameters
    ----------
    cli : click.Group
        The ``istn-sk`` group; call ``cli.add_command(command)``.
    """


@hookspec
def istn_sk_register_augmentations(register) -> None:
    """Add augmentation policies usable as ``augmentation`` of the adapter and task models.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per
        policy. ``factory()`` returns a callable ``augment(images) -> images``
        on a training batch ``(n, C, *spatial)`` (a new tensor of the same
        shape and dtype), drawing its random numbers from torch's global
        stream, which ``fit`` seeds.
    """


@hookspec
def istn_sk_register_regularisers(register) -> None:
    """Add discriminator regularisers usable in the adapter's ``dis_regularisers``.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per
        regulariser. ``factory(weight)`` returns a callable
        ``penalty(real, logits_real, logits_fake) -> scalar tensor`` added to
        the discriminator's loss at every step (``real``: the real images as
        the discriminator saw them; ``logits_*``: its raw outputs). A callable
        with ``needs_real_gradient = True`` gets ``real`` with
        ``requires_grad`` set, for gradient penalties.
    """


@hookspec
def istn_sk_register_content_losses(register) -> None:
    """Add content losses usable in the adapter's ``content_losses``.

    Parameters
    ----------
    register : istn_sk.Register
        Call ``register.add(name, factory, description=...)`` once per loss.
        ``factory(weight, channels)`` returns a :class:`torch.nn.Module` (its
        parameters, if any, train with the ISTN) called at every step as
        ``loss(source_features, mapped_features) -> scalar tensor`` and added
        to the ISTN's loss, already weighted. Both arguments are lists of
        ``(n, C_l, *spatial_l)`` feature maps of the ITN's encoder, finest
        first, with ``C_l = channels[l]``: of the input images (computed
        without gradient) and of the ITN's outputs for them.
    """
