"""The CUDA kernels of the jagged output, after ``mark``: ``tally`` then ``fill``.

Both run a thread per (batch row, chunk of events, slot); the lanes of a warp are slots of one
chunk, so they read the same words of slot bits.

* ``tally``: counts and weight sums per (row, chunk, slice);
* ``fill``: each selected event's row and bag weight, at positions the launcher scans from
  the tally (key-major, as torchrec's KeyedJaggedTensor wants them).
"""

from __future__ import annotations

from dv365.kernels.cuda_layout import CudaLayout
from dv365.kernels.source import band_lines, indent


def _per_slot_prologue(layout: CudaLayout, nch: str) -> list[str]:
    """The thread's (slot ``s``, row ``b``, chunk ``ch``), its events ``[first, stop)``, and
    the word and bit of its slot; threads past the batch or the row's events return."""
    N, K, chunk = len(layout.plan.slots), layout.bands, "chunk"
    return [
        "    g = cuda.grid(1)",
        f"    s = g % {N}",
        f"    nch = {nch}",
        f"    b = g // {N} // nch",
        f"    ch = (g // {N}) % nch",
        "    if b >= starts.shape[0]:",
        "        return",
        f"    first = starts[b, 0] + ch * {chunk}",
        f"    stop = min(starts[b, {K}], first + {chunk})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        "    word = s // 64",
        "    bit = uint64(1) << uint64(s % 64)",
        "    wc = slot_wcol[s]",
    ]


def tally_source(layout: CudaLayout) -> list[str]:
    """The ``tally`` kernel: counts and weight sums of each (row, chunk, slice)."""
    W, NWS = layout.mask_words, layout.weight_width
    flush = [
        "for j in range(slot_ptr[s], slot_ptr[s + 1]):",
        "    if slice_band[j] == k:",
        "        counts[b, ch, slot_slices[j]] = n",
        "        if wc >= 0:",
        "            wsums[b, ch, slot_slices[j]] = wsum",
    ]
    return [
        "@cuda.jit",
        "def tally(offsets, users, starts, base, masks, wvals, slot_ptr, slot_slices,",
        "          slice_band, slot_wcol, chunk, counts, wsums):",
        *_per_slot_prologue(layout, "counts.shape[1]"),
        "    i = stop - 1",
        *indent(band_lines(layout.bands), 1),
        "    lim = starts[b, k]",
        "    n = 0",
        "    wsum = 0.0",
        "    while i >= first:",
        "        while i < lim:",
        *indent(flush, 3),
        "            k -= 1",
        "            lim = starts[b, k]",
        f"        if (masks[uint64((q0 + i) * {W} + word)] & bit) != 0:",
        "            n += 1",
        "            if wc >= 0:",
        f"                wsum += wvals[uint64((q0 + i) * {NWS} + wc)]",
        "        i -= 1",
        "    while k >= 0:",
        *indent(flush, 2),
        "        k -= 1",
        "",
    ]


def fill_source(layout: CudaLayout) -> list[str]:
    """The ``fill`` kernel: rows and bag weights at their scanned positions."""
    K = layout.bands
    W, R, NWS = layout.mask_words, layout.rows_per_event, layout.weight_width
    return [
        "@cuda.jit",
        "def fill(offsets, users, starts, base, masks, wvals, rows, slot_ptr, slot_slices,",
        "         slice_band, slice_pool, slot_wcol, slot_row, chunk, pos, totals, wtotals,",
        "         values, weights):",
        *_per_slot_prologue(layout, "pos.shape[1]"),
        "    rf = slot_row[s]",
        "    i = first",
        *indent(band_lines(K), 1),
        "    for i in range(first, stop):",
        f"        while k < {K - 1} and i >= starts[b, k + 1]:",
        "            k += 1",
        "        qq = q0 + i",
        f"        if (masks[qq * {W} + word] & bit) != 0:",
        f"            r = rows[qq * {R} + rf]",
        f"            w = wvals[qq * {NWS} + wc] if wc >= 0 else 1.0",
        "            for j in range(slot_ptr[s], slot_ptr[s + 1]):",
        "                if slice_band[j] <= k:",
        "                    sl = slot_slices[j]",
        "                    p = pos[b, ch, sl]",
        "                    values[p] = r",
        "                    if slice_pool[j] == 0:",
        "                        weights[p] = 1.0 / totals[b, sl]",
        "                    elif slice_pool[j] == 1:",
        "                        weights[p] = w / wtotals[b, sl]",
        "                    else:",
        "                        weights[p] = w",
        "                    pos[b, ch, sl] = p + 1",
        "",
    ]
