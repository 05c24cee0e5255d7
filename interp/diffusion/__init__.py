"""Masked-diffusion (MDLM) zoo models seen from inside: how their norms move with the noise level t, and the
collectors run at fixed t. The objective itself (loss, held-out bound) lives in `interp.train.mdlm`.

    interp.diffusion.norm_params_over_t(model)        # γ(t), β(t) of every conditioned norm, tidy
    with interp.diffusion.at_noise_level(model, 0.5):   # every forward sees inputs masked at t = 0.5
        res = interp.collect(model, tokens)
"""
from interp.diffusion.fixed_t import at_noise_level, collect_over_t
from interp.diffusion.timedep import conditioned_norms, norm_motion, norm_params_over_t

__all__ = ["at_noise_level", "collect_over_t", "conditioned_norms", "norm_motion", "norm_params_over_t"]
