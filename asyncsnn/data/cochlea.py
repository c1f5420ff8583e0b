"""The cochlea model SHD was made with (``lauscher``), fast enough to make a dataset.

``lauscher`` (Cramer et al. 2020, LGPL-2.1) turns a waveform into spikes in four stages:
RMS normalisation and a Hanning window, a hydrodynamic basilar membrane (one band-pass transfer
function per channel, applied in the frequency domain), Meddis' inner hair cell (transmitter
pools, one probability per sample) and bushy cells (each channel's hair-cell probability
drives ``n_convergence`` refractory fibres, which feed one leaky integrate-and-fire cell).
Its reference implementation runs the last two stages as per-sample Python loops and holds a
``channels x samples x n_convergence`` float64 array (2.5 GB for one second at 700 channels),
so one spoken digit takes minutes.

:class:`Cochlea` computes the same model with lauscher's own classes and parameters:

* the basilar membrane's transfer functions come from ``lauscher``'s ``BasilarMembrane`` and
  are computed once per signal length, then applied to every signal as one batched inverse FFT;
* the hair cell and the bushy cells are the same equations, in the same floating-point order,
  compiled by numba. With ``exact=True`` the fibres' random draws come from the same Mersenne
  Twister stream in the same order as lauscher's ``np.random.rand`` calls (40 draws per channel
  and sample: about 4.5 s per second of 700-channel audio here); by default each fibre's next spike is
  drawn from its cumulative hazard instead, the same distribution with one draw per fibre
  spike (about 0.3 s).

``tests/test_speech.py`` checks that, on the same input and seed, the exact spikes are
lauscher's own (its unmodified ``RmsNormalizer`` ... ``BushyCell`` chain) bit for bit, and that
the hazard sampler's spike statistics match the exact sampler's.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..extras import require


def _lauscher() -> Any:
    return require("lauscher.transformations", "speech", "the spoken-digits generator (cochlea model)")


def _numba() -> Any:
    return require("numba", "speech", "the spoken-digits generator (cochlea model)")


_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """The numba kernels, compiled on first use (numba is an optional dependency)."""
    if _KERNELS:
        return _KERNELS
    numba = _numba()

    @numba.njit(cache=True)
    def hair_cell(bm, ymdt, xdt, ydt, rdt, gdt, hdt, lplusrdt, a, b, m, hair_c, hair_q, hair_w):
        # lauscher.transformations.HairCell._meddis, statement for statement.
        hc = np.zeros(bm.size)
        for j in range(bm.size):
            if (bm[j] + a) > 0:
                kt = gdt * (bm[j] + a) / (bm[j] + a + b)
            else:
                kt = 0.0
            if hair_q < m:
                replenish = ymdt - ydt * hair_q
            else:
                replenish = 0.0
            eject = kt * hair_q
            reuptakeandloss = lplusrdt * hair_c
            reuptake = rdt * hair_c
            reprocess = xdt * hair_w
            hair_q = max(hair_q + replenish - eject + reprocess, 0.0)
            hair_c = max(hair_c + eject - reuptakeandloss, 0.0)
            hair_w = max(hair_w + reuptake - reprocess, 0.0)
            hc[j] = hair_c * hdt
        return hc

    @numba.njit(cache=True)
    def pairwise_sum(a):
        # numpy's float64 add-reduction of a contiguous vector of at most 128 entries (eight
        # partial sums over blocks of eight, combined pairwise, then the rest in order), so that
        # the total is bit for bit what lauscher's np.sum returns.
        n = a.size
        res = 0.0
        if n < 8:
            for i in range(n):
                res += a[i]
            return res
        r0, r1, r2, r3 = a[0], a[1], a[2], a[3]
        r4, r5, r6, r7 = a[4], a[5], a[6], a[7]
        i = 8
        while i < n - (n % 8):
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return res

    @numba.njit(cache=True)
    def bushy_step(step, vm_prev, refrac_counter, current, refrac_samples, decay_mem, weight, dt):
        # One sample of lauscher's BushyCell._lif, in its order: the spike of the previous
        # sample (then refractory, membrane at 0), else the leak; the fibres' current unless
        # refractory; the clamp at 1. Returns (vm, refrac_counter, whether step - 1 spiked).
        vm = 0.0
        fired = False
        if step > 0 and refrac_counter <= 0:
            if vm_prev < 1.0:
                vm = vm_prev * decay_mem
            else:
                refrac_counter = refrac_samples
                fired = True
        if refrac_counter <= 0:
            vm += current * weight * dt
        if vm > 1.0:
            vm = 1.0
        return vm, refrac_counter - 1, fired

    @numba.njit(cache=True)
    def bushy_cells(prob, seed, n_conv, refrac_samples, decay_mem, decay_syn, weight, dt):
        # lauscher.transformations.BushyCell: _sample (np.random.rand(T, n_conv) < p, channel
        # after channel), _correct (fibre refractoriness) and _lif, fused so that no
        # channels x samples x fibres array is held. Returns the (channel, sample) spike matrix.
        np.random.seed(seed)
        n_ch, n_t = prob.shape
        out = np.zeros((n_ch, n_t), np.bool_)
        last = np.empty(n_conv)
        isyn = np.zeros(n_conv)
        for ch in range(n_ch):
            for k in range(n_conv):
                last[k] = -refrac_samples
                isyn[k] = 0.0
            vm_prev = 0.0
            refrac_counter = 0.0
            for step in range(n_t):
                p = prob[ch, step]
                if step > 0:
                    for k in range(n_conv):
                        isyn[k] = isyn[k] * decay_syn
                for k in range(n_conv):
                    spike = np.random.random() < p
                    if spike:
                        if step - last[k] < refrac_samples:
                            spike = False
                        else:
                            last[k] = step
                    isyn[k] += 1.0 if spike else 0.0
                vm_prev, refrac_counter, fired = bushy_step(step, vm_prev, refrac_counter, pairwise_sum(isyn),
                                                            refrac_samples, decay_mem, weight, dt)
                if fired:
                    out[ch, step - 1] = True
        return out

    @numba.njit(cache=True)
    def refractory_gap(refrac_samples):
        # samples between two spikes a fibre keeps: lauscher drops a spike at j when
        # j - last < refrac_samples, so whole-number gaps d >= ceil(refrac_samples) survive; a
        # fibre fires at most once per sample
        return max(1, int(np.ceil(refrac_samples)))

    @numba.njit(cache=True)
    def hazard_fibres(prob, n_conv, gap, hazard, drive):
        # One channel's fibres: drive[t] = fibre spikes at sample t. A fibre that may fire from
        # sample s fires first at the first t >= s where the cumulative hazard -sum(log(1 - p))
        # over s..t reaches an Exp(1) draw (the first success of independent Bernoulli(p_t)
        # trials, exactly in distribution), then stays silent for `gap` samples (lauscher drops
        # a fibre's spikes closer than its refractory time to the last one kept). Cost: one pass
        # over the samples and one draw per fibre spike, instead of n_conv draws per sample.
        n_t = prob.size
        hazard[0] = 0.0
        for t in range(n_t):
            p = prob[t]
            if p >= 1.0:
                h = 40.0  # above any Exp(1) draw of a double (at most 36.8): certain
            elif p > 0.0:
                h = -np.log1p(-p)
            else:
                h = 0.0
            hazard[t + 1] = hazard[t] + h
            drive[t] = 0.0
        for k in range(n_conv):
            s = 0
            while s < n_t:
                target = hazard[s] - np.log(1.0 - np.random.random())
                t = np.searchsorted(hazard, target, side="left") - 1
                if t < s:
                    t = s
                if t >= n_t:
                    break
                drive[t] += 1.0
                s = t + gap

    @numba.njit(cache=True)
    def fibres_hazard(prob, seed, n_conv, refrac_samples):
        # hazard_fibres on one channel, seeded (for tests against lauscher's _sample)
        np.random.seed(seed)
        drive = np.zeros(prob.size)
        hazard_fibres(prob, n_conv, refractory_gap(refrac_samples), np.empty(prob.size + 1), drive)
        return drive

    @numba.njit(cache=True)
    def bushy_cells_hazard(prob, seed, n_conv, refrac_samples, decay_mem, decay_syn, weight, dt):
        # The same bushy cells as bushy_cells, driven by hazard_fibres: the fibres' summed
        # current is one number per sample (the sum over fibres taken up front, in another order
        # than lauscher's, which only this sampler's statistics are compared with).
        np.random.seed(seed)
        n_ch, n_t = prob.shape
        out = np.zeros((n_ch, n_t), np.bool_)
        hazard = np.empty(n_t + 1)
        drive = np.zeros(n_t)
        gap = refractory_gap(refrac_samples)
        for ch in range(n_ch):
            hazard_fibres(prob[ch], n_conv, gap, hazard, drive)
            vm_prev = 0.0
            isyn = 0.0
            refrac_counter = 0.0
            for step in range(n_t):
                if step > 0:
                    isyn = isyn * decay_syn
                isyn += drive[step]
                vm_prev, refrac_counter, fired = bushy_step(step, vm_prev, refrac_counter, isyn, refrac_samples,
                                                            decay_mem, weight, dt)
                if fired:
                    out[ch, step - 1] = True
        return out

    _KERNELS.update(hair_cell=hair_cell, bushy_cells=bushy_cells, pairwise_sum=pairwise_sum,
                    bushy_cells_hazard=bushy_cells_hazard, fibres_hazard=fibres_hazard)
    return _KERNELS


def transfer_functions(channels: int, sample_rate: int, n_samples: int, lo: int = 0,
                       hi: Optional[int] = None) -> np.ndarray:
    """lauscher's basilar-membrane transfer functions ``(channels, n_samples // 2 + 1)`` (rows
    ``lo:hi``) at the frequencies its ``BasilarMembrane`` evaluates for such a signal."""
    bm = _lauscher().BasilarMembrane(channels=int(channels))
    n_freq = int(n_samples) // 2 + 1
    omega = 2 * np.pi * np.linspace(1, int(sample_rate) // 2, n_freq)
    with np.errstate(all="ignore"):
        out = np.stack([bm._v(omega, c) for c in bm.ch[lo:hi]]) if len(bm.ch[lo:hi]) else np.zeros((0, n_freq), complex)
    if not np.all(np.isfinite(out)):
        raise ValueError("the basilar membrane's transfer functions are not finite at this sample rate")
    return out


class Cochlea:
    """lauscher's ``Wave2Spike`` chain for signals of ``n_samples`` samples at ``sample_rate``.

    ``cochlea(signal, seed)`` returns spike times (seconds) and channels, ordered by time then
    channel, as lauscher's ``SpikeTrain.from_dense`` gives them. ``seed`` seeds the fibres'
    random draws (lauscher draws them from numpy's global generator).
    """

    def __init__(self, channels: int = 700, sample_rate: int = 22_050, n_samples: int = 22_050, *,
                 transfer: Optional[np.ndarray] = None, exact: bool = True) -> None:
        if channels < 1:
            raise ValueError(f"channels: {channels} is outside 1..inf")
        if sample_rate < 2 or n_samples < 2:
            raise ValueError("sample_rate and n_samples must be at least 2")
        lt = _lauscher()
        self.channels, self.sample_rate, self.n_samples = int(channels), int(sample_rate), int(n_samples)
        self.exact = bool(exact)
        self._hc = lt.HairCell()
        self._bc = lt.BushyCell()
        if not 1 <= self._bc.n_convergence <= 128:
            raise ValueError("BushyCell.n_convergence must be in 1..128 (numpy's summation order is followed)")
        self.out_rate = self.sample_rate // 2  # lauscher's basilar membrane halves the rate
        shape = (self.channels, self.n_samples // 2 + 1)
        if transfer is None:
            transfer = transfer_functions(self.channels, self.sample_rate, self.n_samples)
        if transfer.shape != shape:
            raise ValueError(f"transfer: shape {transfer.shape} is not {shape}")
        self._transfer = transfer

    def front_end(self, signal: np.ndarray) -> np.ndarray:
        """RMS normalisation to 0.3 and a Hanning window (lauscher's first two stages)."""
        lt = _lauscher()
        from lauscher.audiowaves import MonoAudioWave

        wave = MonoAudioWave(np.asarray(signal, np.float64).copy(), self.sample_rate)
        wave = lt.RmsNormalizer(0.3)(wave)
        wave = lt.HanningWindow()(wave)
        return wave.samples

    def basilar_membrane(self, samples: np.ndarray) -> np.ndarray:
        """Membrane velocity ``(channels, n_samples // 2 + 1)`` at ``sample_rate // 2``."""
        if samples.shape != (self.n_samples,):
            raise ValueError(f"signal: shape {samples.shape} is not ({self.n_samples},)")
        n_freq = self.n_samples // 2 + 1
        stim = np.fft.fft(samples)[:n_freq]
        return np.real(np.fft.ifft(self._transfer * stim[None, :], axis=1))

    def hair_cells(self, velocity: np.ndarray) -> np.ndarray:
        """Release probability per channel and sample (Meddis' hair cell)."""
        hc, fs = self._hc, float(self.out_rate)
        kt = hc.g * hc.a / (hc.a + hc.b)
        hair_c = hc.m * hc.y * kt / (hc.l * kt + hc.y * (hc.l + hc.r))
        hair_q = hair_c * (hc.l + hc.r) / kt
        hair_w = hair_c * hc.r / hc.x
        consts = (hc.y * hc.m / fs, hc.x / fs, hc.y / fs, hc.r / fs, hc.g / fs, hc.h / fs, (hc.l + hc.r) / fs,
                  float(hc.a), float(hc.b), float(hc.m), hair_c, hair_q, hair_w)
        k = _kernels()["hair_cell"]
        return np.stack([k(np.ascontiguousarray(ch), *consts) for ch in velocity])

    def bushy_cells(self, prob: np.ndarray, seed: int) -> np.ndarray:
        """Spike matrix ``(channels, samples)`` of the bushy cells: with ``exact``, the fibres draw
        lauscher's random numbers in lauscher's order; otherwise each fibre's next spike is drawn
        from its cumulative hazard (the same distribution, one draw per fibre spike)."""
        bc, fs = self._bc, self.out_rate
        dt = 1 / float(fs)
        decay_mem = np.exp(-dt / bc.tau_mem)
        decay_syn = np.exp(-dt / bc.tau_syn)
        kernel = _kernels()["bushy_cells" if self.exact else "bushy_cells_hazard"]
        return kernel(np.ascontiguousarray(prob, np.float64), int(seed) & 0xFFFFFFFF, int(bc.n_convergence),
                      bc.tau_refrac * fs, float(decay_mem), float(decay_syn), float(bc.weight), dt)

    def __call__(self, signal: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        spikes = self.bushy_cells(self.hair_cells(self.basilar_membrane(self.front_end(signal))), seed)
        t_idx, units = np.nonzero(spikes.T)
        return t_idx / self.out_rate, units.astype(np.int64)


__all__ = ["Cochlea"]
