"""The optimisation step and log window of pixel tokenizers (image and video recipes)."""

from __future__ import annotations

import time

import torch

from ..metrics import code_histogram, codebook_usage, perplexity, psnr
from ..nn import adaptive_gan_weight, hinge_d_loss, hinge_g_loss, structural_loss


def tokenizer_step(raw_model, recon: torch.Tensor, x: torch.Tensor, aux: torch.Tensor, lc: dict, step: int,
                   opt: torch.optim.Optimizer, grad_clip: float, disc=None, opt_d=None, amp: bool = False,
                   structural=structural_loss) -> dict[str, torch.Tensor]:
    """One optimisation step of a pixel tokenizer (and its discriminator) from a forward pass.

    recon, x: [N, 3, H, W] in [0, 1] (recon fp32); aux: the quantizer's loss. Loss: L1 + L2 +
    ``structural(recon, x, kind)`` + quantizer loss, and from ``loss.gan_start`` on a hinge GAN
    loss with VQGAN's adaptive weight (at ``raw_model.decoder.last_layer``); then a discriminator
    step. Returns the detached losses: loss, rec (the reconstruction part), l1, l2, struct,
    quant, gan, d. Shared by the image and video recipes."""
    dev = recon.device.type
    l1 = (recon - x).abs().mean()
    l2 = (recon - x).pow(2).mean()
    st = structural(recon.clamp(0, 1), x, lc["structural_kind"]) if lc["structural"] > 0 else recon.new_zeros(())
    rec = lc["l1"] * l1 + lc["l2"] * l2 + lc["structural"] * st
    loss = rec + lc["quantizer"] * aux
    gan_on = disc is not None and step >= lc["gan_start"]
    g_loss = recon.new_zeros(())
    if gan_on:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            g_loss = hinge_g_loss(disc(recon * 2 - 1).float())
        w = lc["gan"]
        if lc["adaptive_gan_weight"]:
            w = w * adaptive_gan_weight(rec, g_loss, raw_model.decoder.last_layer)
        loss = loss + w * g_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    opt.step()
    d_loss = recon.new_zeros(())
    if gan_on:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            d_loss = hinge_d_loss(disc(x * 2 - 1).float(), disc(recon.detach() * 2 - 1).float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
    out = {"loss": loss, "rec": rec, "l1": l1, "l2": l2, "struct": st, "quant": aux, "gan": g_loss, "d": d_loss}
    return {k: v.detach() for k, v in out.items()}


class StepWindow:
    """Mean losses, train PSNR and codebook usage over the steps between two log lines."""

    KEYS = ("loss", "l1", "l2", "struct", "quant", "gan", "d", "psnr")

    def __init__(self, codebook_size: int):
        self.hist = torch.zeros(codebook_size, dtype=torch.float64)
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.n = 0
        self.hist.zero_()
        self.t = time.time()

    @torch.no_grad()
    def add(self, losses: dict, recon: torch.Tensor, x: torch.Tensor, codes) -> None:
        for k in self.KEYS[:-1]:
            self.sums[k] += float(losses[k])
        self.sums["psnr"] += float(psnr(recon.clamp(0, 1), x).mean())
        self.n += 1
        self.hist += code_histogram(codes, len(self.hist))

    def mean(self, key: str) -> float:
        return self.sums[key] / max(1, self.n)

    def line(self, step: int, elapsed: float, lr: float) -> str:
        """The log line of this window; starts the next window."""
        m = {k: self.mean(k) for k in self.KEYS}
        sps = self.n / max(1e-9, time.time() - self.t)
        line = (f"step {step} | {elapsed / 60:.1f} min | {sps:.2f} steps/s | lr {lr:.2e} | loss {m['loss']:.4f} "
                f"l1 {m['l1']:.4f} l2 {m['l2']:.5f} struct {m['struct']:.4f} "
                f"quant {m['quant']:.4f} gan {m['gan']:.3f} d {m['d']:.3f} | "
                f"train psnr {m['psnr']:.2f} | usage {codebook_usage(self.hist):.3f} "
                f"perplexity {perplexity(self.hist):.1f} | threads {torch.get_num_threads()}")
        self.reset()
        return line
