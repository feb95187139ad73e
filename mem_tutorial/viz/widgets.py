"""ipywidgets explorers: sliders on the left, the memory at work on the right.

Each function returns the widget (display it as the last expression of a cell). They also work without a
browser: ``explorer.update(...)``-style callbacks are plain functions, so tests can drive them headless.
"""

from __future__ import annotations

import torch


def content_addressing_explorer(memory: torch.Tensor, key_slots: list[int] | None = None, noise: float = 0.3,
                                seed: int = 0):
    """Chapter 1: pick a key (a noisy copy of one memory row) and a key strength β; see the content weighting
    over the slots and the read vector next to the true row.

    Args:
        memory: [N, W] one memory matrix.
        key_slots: slots offered as key targets (default: all).
        noise: standard deviation of the noise added to the chosen row to make the key.
        seed: seed for the key noise.

    Returns:
        an ``ipywidgets.VBox`` with sliders and an output area.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    from mem_tutorial.memory import content_weighting, read

    if memory.dim() != 2:
        raise ValueError(f"memory: expected shape [N, W], got {list(memory.shape)}")
    n_slots = memory.shape[0]
    slots = key_slots or list(range(n_slots))
    gen = torch.Generator().manual_seed(seed)
    noise_table = noise * torch.randn(n_slots, memory.shape[1], generator=gen, dtype=memory.dtype)

    slot = widgets.Dropdown(options=slots, value=slots[0], description="key ≈ row")
    beta = widgets.FloatLogSlider(value=5.0, base=10, min=-1, max=2, step=0.05, description="β (strength)")
    out = widgets.Output()

    def draw(*_):
        key = memory[slot.value] + noise_table[slot.value]
        w = content_weighting(memory[None], key[None], torch.tensor([beta.value], dtype=memory.dtype))[0]
        r = read(memory[None], w[None])[0]
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 2.8))
            ax1.bar(range(n_slots), w.numpy(), color="tab:blue")
            ax1.set_ylim(0, 1)
            ax1.set_xlabel("slot")
            ax1.set_title(f"content weighting, β = {beta.value:.3g}")
            ax2.plot(memory[slot.value].numpy(), "o-", label=f"row {slot.value}")
            ax2.plot(r.numpy(), "s--", label="read vector")
            ax2.set_xlabel("word position")
            ax2.set_title("read vs the row the key came from")
            ax2.legend(fontsize=8)
            fig.tight_layout()
            plt.show()

    slot.observe(draw, names="value")
    beta.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slot, beta]), out])
